"""Custom auth for ``langgraph dev`` / the LangGraph server (``langgraph.json`` → ``auth``).

Every request carries HTTP Basic credentials of an account in the app's accounts file
(``AIRLOCK_ACCOUNTS``, else the domain's demo file, e.g. ``tools/airline/accounts.demo.yaml``;
PBKDF2 hashes, see ``ui/auth.py``). The authenticated user carries ``customer_id`` and ``roles``; the server
puts it in each run's ``config["configurable"]["langgraph_auth_user"]``, and the graph takes
the customer from there (``graph/identity.py``), never from the run's context.

Authorization (decided here, documented in the README):

* Only accounts with the ``customer`` role use threads and runs. A thread gets
  ``metadata.owner = <username>`` when it is created (by a client or by a run), whatever the
  client sent, and every read, search, update, delete, run, resume or stream of a thread is
  filtered to ``owner == <username>``: another customer's thread answers 404, as if absent.
* A run whose context names another ``user_id`` or ``actor`` is refused (403).
* Assistants (the graph's system assistant) may be read and searched; creating or changing
  assistants, crons and the store are refused. Reviewers decide cases in the app, where their
  decisions are signed, not through the server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from langgraph_sdk import Auth

from graph.db import open_pool, resolve_database_url
from graph.runtime import AirlockSettings
from nodes.audit import AuditLog
from ui.auth import CUSTOMER_ROLE, Account, Accounts, accounts_path, load_accounts
from ui.login_throttle import LoginGate, LoginThrottle, LoginUnavailableError

__all__ = ["OWNER_KEY", "auth", "authenticate_basic"]

OWNER_KEY = "owner"
_CACHE_TTL_S = 300.0  # a verified password is not re-hashed (about 0.1 s of CPU) for this long

auth = Auth()
_cache_key = secrets.token_bytes(32)  # per process: cache keys are useless outside it
_verified: dict[bytes, tuple[float, str]] = {}


@lru_cache(maxsize=1)
def _accounts() -> Accounts:
    return load_accounts(accounts_path())


@lru_cache(maxsize=1)
def _gate() -> LoginGate:
    """Return the login gate: the app's Postgres throttle (shared with the Gradio app) and audit."""
    settings = AirlockSettings.from_env()
    from nodes.audit_key import APP_ROLE, load_audit_key

    pool = open_pool(resolve_database_url(settings.database_url, data_dir=settings.data_dir), max_size=4,
                     role=APP_ROLE)
    audit = AuditLog(pool=pool, key=load_audit_key(data_dir=settings.data_dir, generate=settings.database_url is None),
                     anchors_path=settings.anchors_file)
    return LoginGate(accounts=_accounts(), throttle=LoginThrottle(pool=pool),
                     audit=lambda event, actor, payload: audit.append(event, actor=actor, payload=payload))


def _unauthorized(detail: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(
        status_code=401, detail=detail, headers={"WWW-Authenticate": 'Basic realm="airlock"'}
    )


def _parse_basic(authorization: str | None) -> tuple[str, str]:
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        raise _unauthorized("HTTP Basic credentials of an airlock account are required")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _unauthorized("malformed Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username or not password:
        raise _unauthorized("malformed Basic credentials")
    return username, password


def _check(username: str, password: str, address: str) -> Account | None:
    accounts = _accounts()
    key = hmac.new(_cache_key, f"{username}\0{password}".encode(), hashlib.sha256).digest()
    now = time.monotonic()
    hit = _verified.get(key)
    if hit is not None and hit[0] > now and hit[1] == username:
        return accounts.get(username)
    try:
        # Throttled per (username, address) and per address, never per username alone.
        account = _gate().check(username, password, address)
    except LoginUnavailableError as exc:
        raise Auth.exceptions.HTTPException(status_code=503, detail=str(exc)) from None
    if account is not None:
        if len(_verified) > 10_000:  # bound memory
            _verified.clear()
        _verified[key] = (now + _CACHE_TTL_S, username)
    return account


def authenticate_basic(authorization: str | None, address: str = "") -> dict[str, Any]:
    """Verify HTTP Basic credentials against the accounts file; return the server's user.

    Args:
        authorization: The ``Authorization`` header.
        address: The client's address (the throttle's key with the username).

    Returns:
        The user: ``identity`` (username), ``customer_id``, ``roles`` and ``permissions``.

    Raises:
        Auth.exceptions.HTTPException: 401 when the credentials are missing or wrong.
    """
    username, password = _parse_basic(authorization)
    account = _check(username, password, address)
    if account is None:
        raise _unauthorized("wrong username or password (or too many attempts)")
    return {
        "identity": account.username,
        "display_name": account.username,
        "is_authenticated": True,
        "customer_id": account.customer_id,
        "roles": list(account.roles),
        "permissions": list(account.roles),
    }


@auth.authenticate
async def _authenticate(authorization: str | None, request: Any) -> dict[str, Any]:
    client = getattr(request, "client", None)
    address = str(getattr(client, "host", "") or "")
    # PBKDF2 and the throttle's query block: keep the server's event loop free while they run.
    return await asyncio.to_thread(authenticate_basic, authorization, address)


# -- authorization ----------------------------------------------------------------------------------
def _user_field(ctx: Auth.types.AuthContext, name: str) -> Any:
    getter = getattr(ctx.user, "get", None)
    return getter(name) if callable(getter) else getattr(ctx.user, name, None)


def _customer(ctx: Auth.types.AuthContext) -> str:
    """Return the signed-in customer's username, or refuse (403) anyone else."""
    roles = _user_field(ctx, "roles")
    customer = _user_field(ctx, "customer_id")
    if not customer or not isinstance(roles, list | tuple) or CUSTOMER_ROLE not in roles:
        raise Auth.exceptions.HTTPException(status_code=403, detail="only customer accounts use threads")
    return str(ctx.user.identity)


def _own(value: Mapping[str, Any], identity: str) -> None:
    """Stamp the owner into the metadata a client sends (a client never chooses it)."""
    metadata = value.get("metadata")
    if isinstance(metadata, dict):
        metadata[OWNER_KEY] = identity


@auth.on
async def _deny_everything_else(ctx: Auth.types.AuthContext, value: Any) -> bool:
    """Refuse what no handler below allows (assistant writes, crons, the store)."""
    raise Auth.exceptions.HTTPException(status_code=403, detail="not allowed")


@auth.on.assistants.read
async def _read_assistant(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Let any signed-in account see the graph's assistant."""


@auth.on.assistants.search
async def _search_assistants(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Let any signed-in account list the graph's assistant."""


@auth.on.threads.create
async def _create_thread(ctx: Auth.types.AuthContext, value: Auth.types.ThreadsCreate) -> dict[str, str]:
    """Give a new thread its owner, whatever metadata the client sent."""
    identity = _customer(ctx)
    if value.get("metadata") is None:
        value["metadata"] = {}
    _own(value, identity)
    return {OWNER_KEY: identity}


def _claims(kwargs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    config = kwargs.get("config") if isinstance(kwargs.get("config"), Mapping) else {}
    found = [kwargs.get("context"), (config or {}).get("configurable")]
    return [c for c in found if isinstance(c, Mapping)]


@auth.on.threads.create_run
async def _create_run(
    ctx: Auth.types.AuthContext, value: Auth.types.RunsCreate
) -> dict[str, str]:
    """Allow a run (or resume) on the caller's own threads only, as themselves only."""
    identity = _customer(ctx)
    customer = str(_user_field(ctx, "customer_id"))
    for claim in _claims(value.get("kwargs") or {}):
        if claim.get("user_id") not in (None, customer) or claim.get("actor") not in (None, identity, customer):
            raise Auth.exceptions.HTTPException(
                status_code=403, detail="the run's context names another user than the signed-in one"
            )
    # A run may create its thread (stateless runs, if_not_exists="create"): it is the caller's.
    if value.get("metadata") is None:
        value["metadata"] = {}
    _own(value, identity)
    return {OWNER_KEY: identity}


@auth.on.threads.update
async def _update_thread(ctx: Auth.types.AuthContext, value: Auth.types.ThreadsUpdate) -> dict[str, str]:
    """Change one's own threads only, never their owner."""
    identity = _customer(ctx)
    _own(value, identity)
    return {OWNER_KEY: identity}


@auth.on.threads
async def _own_threads(ctx: Auth.types.AuthContext, value: Any) -> dict[str, str]:
    """Read, search, delete, stream: the caller's own threads only."""
    return {OWNER_KEY: _customer(ctx)}
