"""Bearer tokens: verify a JWT (HS256 secret or RS256 JWKS) and map it to a principal with roles."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jwt

from graph.errors import AirlockError
from graph.identity import AUDITOR_ROLE, CUSTOMER_ROLE
from graph.reviews import REVIEWER_ROLE
from ui.api.settings import ServeSettings

__all__ = ["KNOWN_ROLES", "Principal", "TokenError", "TokenVerifier"]

KNOWN_ROLES = (CUSTOMER_ROLE, REVIEWER_ROLE, AUDITOR_ROLE)


class TokenError(AirlockError, PermissionError):
    """A bearer token is missing, malformed, expired or not for this service."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who a request acts for.

    Attributes:
        subject: The token's ``sub`` (audit rows name it).
        customer_id: The customer whose threads the caller owns (customers only).
        roles: Roles from the token's roles claim (assignee roles such as ``supervisor`` too).
    """

    subject: str
    customer_id: str | None
    roles: tuple[str, ...]

    @property
    def is_customer(self) -> bool:
        """Return whether the caller may chat as a customer."""
        return CUSTOMER_ROLE in self.roles and self.customer_id is not None

    def has(self, role: str) -> bool:
        """Return whether the caller holds ``role``."""
        return role in self.roles


class TokenVerifier:
    """Check signature, expiry, issuer and audience; read the roles claim."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self._jwks: jwt.PyJWKClient | None = None
        self._keys: dict[str, Any] = {}
        if settings.jwks_url:
            self._jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True)
        elif settings.jwks_file:
            data = json.loads(settings.jwks_file.read_text(encoding="utf-8"))
            for item in jwt.PyJWKSet.from_dict(data).keys:
                self._keys[str(item.key_id or "")] = item.key

    def _key(self, token: str) -> tuple[Any, list[str]]:
        if self.settings.jwt_secret:
            return self.settings.jwt_secret, ["HS256"]
        if self._jwks is not None:
            return self._jwks.get_signing_key_from_jwt(token).key, ["RS256"]
        kid = str(jwt.get_unverified_header(token).get("kid") or "")
        if kid not in self._keys:
            if len(self._keys) == 1 and not kid:
                return next(iter(self._keys.values())), ["RS256"]
            raise TokenError("the token's key id is not in the JWKS")
        return self._keys[kid], ["RS256"]

    def verify(self, token: str) -> Principal:
        """Return the principal of a valid token.

        Raises:
            TokenError: With the reason (never the token).
        """
        s = self.settings
        try:
            key, algorithms = self._key(token)
            claims = jwt.decode(
                token, key, algorithms=algorithms, audience=s.audience, issuer=s.issuer, leeway=s.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise TokenError("the token is not for this service (audience)") from None
        except jwt.InvalidIssuerError:
            raise TokenError("the token's issuer is not trusted") from None
        except (jwt.PyJWTError, ValueError) as exc:
            raise TokenError(f"invalid token: {type(exc).__name__}") from None
        sub = claims.get("sub")
        raw = claims.get(s.roles_claim) or []
        if isinstance(raw, str):
            raw = raw.split()
        if not isinstance(sub, str) or not sub or not isinstance(raw, list):
            raise TokenError(f"the token needs a string 'sub' and a list '{s.roles_claim}'")
        roles = tuple(str(r) for r in raw if isinstance(r, str))
        customer = claims.get(s.customer_claim) or sub if CUSTOMER_ROLE in roles else None
        return Principal(subject=sub, customer_id=str(customer) if customer else None, roles=roles)
