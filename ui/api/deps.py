"""Request dependencies: who the caller is (bearer token), their limits, and role checks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from graph.identity import AUDITOR_ROLE
from graph.reviews import REVIEWER_ROLE
from graph.service import AirlockApp
from ui.api.problems import Problem
from ui.api.runs import Runner, RunStore
from ui.api.settings import ServeSettings
from ui.api.throttle import RateLimits
from ui.api.tokens import Principal, TokenVerifier
from ui.api.wakeups import Wakeups

__all__ = ["ApiState", "Auditor", "Caller", "Customer", "Reviewer", "State", "api_state", "owned_thread"]

log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False, description="A JWT from your identity provider (see the README).")


@dataclass(kw_only=True)
class ApiState:
    """What the routes share (one per process)."""

    app: AirlockApp
    settings: ServeSettings
    verifier: TokenVerifier
    limits: RateLimits
    runs: RunStore
    runner: Runner
    wakeups: Wakeups


def api_state(request: Request) -> ApiState:
    """Return the process's API state."""
    return request.app.state.airlock


State = Annotated[ApiState, Depends(api_state)]


def caller(state: State, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    """Verify the bearer token, then count the request against the caller's limit."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Problem(401, "sign in: send 'Authorization: Bearer <JWT>'", headers={"WWW-Authenticate": "Bearer"})
    principal = state.verifier.verify(credentials.credentials)
    state.limits.check_user(principal.subject)
    return principal


Caller = Annotated[Principal, Depends(caller)]


def _refuse(state: ApiState, who: Principal, request: Request, needs: str) -> Problem:
    """Audit a signed-in caller's attempt beyond their roles, and return the 403 to raise."""
    try:
        state.app.services.audit.append("api.refused", actor=who.subject,
                                        payload={"needs": needs, "path": request.url.path[:200]})
    except Exception:  # the refusal stands even when the audit log is unreachable
        log.exception("audit append failed")
    return Problem(403, f"only a caller with the {needs!r} role may do this")


def _customer(state: State, who: Caller, request: Request) -> Principal:
    if not who.is_customer:
        raise _refuse(state, who, request, "customer")
    return who


def _role(role: str):
    def check(state: State, who: Caller, request: Request) -> Principal:
        if not who.has(role):
            raise _refuse(state, who, request, role)
        return who

    return check


Customer = Annotated[Principal, Depends(_customer)]
Reviewer = Annotated[Principal, Depends(_role(REVIEWER_ROLE))]
Auditor = Annotated[Principal, Depends(_role(AUDITOR_ROLE))]


async def owned_thread(state: ApiState, who: Principal, thread_id: str) -> str:
    """Return ``thread_id`` if the customer owns it; 404 otherwise (another's thread is not revealed)."""
    if len(thread_id) > 200 or not (thread_id.isascii() and thread_id.isalnum()):
        raise Problem(404, "unknown thread")
    if await anyio.to_thread.run_sync(state.app.thread_owner, thread_id) != who.customer_id:
        raise Problem(404, "unknown thread")
    return thread_id

