"""Settings of ``airlock serve``: one kw-only dataclass, read from ``AIRLOCK_API_*`` and validated."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from graph.errors import AirlockError

__all__ = ["ServeSettings", "ServeSettingsError"]


class ServeSettingsError(AirlockError, ValueError):
    """A setting of the HTTP API is missing or invalid; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, *, low: int = 1) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ServeSettingsError(f"{name} must be an integer, not {raw!r}") from None
    if value < low:
        raise ServeSettingsError(f"{name} must be at least {low}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ServeSettingsError(f"{name} must be a number of seconds, not {raw!r}") from None
    if not 0.01 <= value <= 10:
        raise ServeSettingsError(f"{name} must be between 0.01 and 10 seconds")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in (env.get(name) or "").split(",") if p.strip())


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    """Everything ``airlock serve`` configures; see the README's table of environment variables.

    Attributes:
        jwt_secret: HS256 shared secret (``AIRLOCK_JWT_SECRET``, at least 32 bytes).
        jwks_file: A JWKS file of RS256 public keys (``AIRLOCK_JWT_JWKS_FILE``).
        jwks_url: A JWKS URL of RS256 public keys (``AIRLOCK_JWT_JWKS_URL``).
        issuer: The required ``iss`` claim (``AIRLOCK_JWT_ISSUER``).
        audience: The required ``aud`` claim (``AIRLOCK_JWT_AUDIENCE``).
        roles_claim: The claim that lists the caller's roles (``AIRLOCK_JWT_ROLES_CLAIM``).
        customer_claim: The claim naming the customer id; ``sub`` when absent
            (``AIRLOCK_JWT_CUSTOMER_CLAIM``).
        leeway_s: Clock skew allowed on ``exp``/``nbf`` (``AIRLOCK_JWT_LEEWAY_S``).
        rate_user: Requests per user, a ``limits`` string (``AIRLOCK_API_RATE_USER``).
        rate_ip: Requests per client IP (``AIRLOCK_API_RATE_IP``).
        redis_url: Rate-limit storage shared by processes (``REDIS_URL``); memory when empty.
        cors_origins: Allowed browser origins (``AIRLOCK_API_CORS_ORIGINS``, comma-separated).
        max_body_bytes: Largest request body (``AIRLOCK_API_MAX_BODY_BYTES``); larger is 413.
        run_workers: Turns one process runs at once (``AIRLOCK_API_RUN_WORKERS``).
        poll_interval_s: How often a stream looks in Postgres for new events of a run of another
            process (``AIRLOCK_API_POLL_S``); this process's runs wake their streams at once.
        mount_ui: Whether the Gradio app is served under ``/ui`` (``AIRLOCK_API_MOUNT_UI``).
        trust_proxy: Whether ``X-Forwarded-For`` names the client (``AIRLOCK_API_TRUST_PROXY``;
            only behind a proxy that sets it).
    """

    jwt_secret: str | None = field(default=None, repr=False)
    jwks_file: Path | None = None
    jwks_url: str | None = None
    issuer: str = "airlock"
    audience: str = "airlock-api"
    roles_claim: str = "roles"
    customer_claim: str = "customer_id"
    leeway_s: int = 30
    rate_user: str = "120/minute"
    rate_ip: str = "600/minute"
    redis_url: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 64 * 1024
    run_workers: int = 8
    poll_interval_s: float = 0.5
    mount_ui: bool = True
    trust_proxy: bool = False

    def __post_init__(self) -> None:
        from limits import parse_many

        keys = sum(1 for k in (self.jwt_secret, self.jwks_file, self.jwks_url) if k)
        if keys != 1:
            raise ServeSettingsError(
                "configure exactly one token key: AIRLOCK_JWT_SECRET (HS256), AIRLOCK_JWT_JWKS_FILE "
                "or AIRLOCK_JWT_JWKS_URL (RS256)"
            )
        if self.jwt_secret is not None and len(self.jwt_secret.encode()) < 32:
            raise ServeSettingsError("AIRLOCK_JWT_SECRET must be at least 32 bytes (e.g. `openssl rand -hex 32`)")
        if self.jwks_file is not None and not Path(self.jwks_file).is_file():
            raise ServeSettingsError(f"AIRLOCK_JWT_JWKS_FILE: no such file: {self.jwks_file}")
        if not self.issuer or not self.audience:
            raise ServeSettingsError("AIRLOCK_JWT_ISSUER and AIRLOCK_JWT_AUDIENCE must not be empty")
        for name, value in (("AIRLOCK_API_RATE_USER", self.rate_user), ("AIRLOCK_API_RATE_IP", self.rate_ip)):
            try:
                parse_many(value)
            except ValueError:
                raise ServeSettingsError(f"{name} must be a rate such as '120/minute', not {value!r}") from None
        if "*" in self.cors_origins:
            raise ServeSettingsError("AIRLOCK_API_CORS_ORIGINS: '*' is not allowed with bearer tokens; list origins")
        if self.max_body_bytes < 1024 or self.run_workers < 1 or self.poll_interval_s <= 0:
            raise ServeSettingsError("AIRLOCK_API_MAX_BODY_BYTES >= 1024 and AIRLOCK_API_RUN_WORKERS >= 1 are required")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServeSettings:
        """Read the settings from the environment; keyword overrides win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "jwt_secret": env.get("AIRLOCK_JWT_SECRET") or None,
            "jwks_file": Path(env["AIRLOCK_JWT_JWKS_FILE"]) if env.get("AIRLOCK_JWT_JWKS_FILE") else None,
            "jwks_url": env.get("AIRLOCK_JWT_JWKS_URL") or None,
            "issuer": env.get("AIRLOCK_JWT_ISSUER", "airlock"),
            "audience": env.get("AIRLOCK_JWT_AUDIENCE", "airlock-api"),
            "roles_claim": env.get("AIRLOCK_JWT_ROLES_CLAIM", "roles"),
            "customer_claim": env.get("AIRLOCK_JWT_CUSTOMER_CLAIM", "customer_id"),
            "leeway_s": _int(env, "AIRLOCK_JWT_LEEWAY_S", 30, low=0),
            "rate_user": env.get("AIRLOCK_API_RATE_USER", "120/minute"),
            "rate_ip": env.get("AIRLOCK_API_RATE_IP", "600/minute"),
            "redis_url": env.get("REDIS_URL") or None,
            "cors_origins": _list(env, "AIRLOCK_API_CORS_ORIGINS"),
            "max_body_bytes": _int(env, "AIRLOCK_API_MAX_BODY_BYTES", 64 * 1024),
            "run_workers": _int(env, "AIRLOCK_API_RUN_WORKERS", 8),
            "poll_interval_s": _float(env, "AIRLOCK_API_POLL_S", 0.5),
            "mount_ui": (env.get("AIRLOCK_API_MOUNT_UI", "1").strip().lower() not in ("0", "false", "no")),
            "trust_proxy": (env.get("AIRLOCK_API_TRUST_PROXY", "0").strip().lower() in ("1", "true", "yes")),
        }
        known = {f.name for f in fields(cls)}
        values.update({k: v for k, v in overrides.items() if k in known and v is not None})
        return cls(**values)
