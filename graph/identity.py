"""Who a run acts for: verified credentials first, the runtime context only when there are none.

Two ways reach the graph. The app (``graph/service.py``) authenticates the customer itself
and passes an :class:`~graph.context.AirlockContext`; the LangGraph server (``langgraph dev``,
``graph/studio_auth.py``) authenticates each request and puts the user in
``config["configurable"]["langgraph_auth_user"]``, where a client cannot write (the server
reserves the key). When that user is present it is the only source of identity: a context
``user_id`` or ``actor`` that differs is refused, never trusted, and roles come from the
credentials alone.

A thread belongs to the customer of its first message (``owner`` in state). Only the owner,
signed in as a customer, may answer the thread's gates; :func:`refuse_foreign_answers` turns
any answer another actor brings into a non-answer before the node reads it, so the gate is
asked again and the refused answer stays refused when the owner's run replays it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langgraph._internal._constants import CONFIG_KEY_RESUME_MAP, CONFIG_KEY_SCRATCHPAD

from graph.context import AirlockContext

__all__ = [
    "AUTH_USER_ID_KEY",
    "AUDITOR_ROLE",
    "AUTH_USER_KEY",
    "CUSTOMER_ROLE",
    "NOT_AN_ANSWER",
    "Identity",
    "keep_first",
    "refuse_foreign_answers",
    "resolve_identity",
]

AUTH_USER_KEY = "langgraph_auth_user"
AUTH_USER_ID_KEY = "langgraph_auth_user_id"
CUSTOMER_ROLE = "customer"
# May verify and export the audit log (the HTTP API); nothing else.
AUDITOR_ROLE = "auditor"
# What a refused answer becomes: neither a confirmation, a cancellation nor a signed decision.
NOT_AN_ANSWER: dict[str, Any] = {"action": "refused", "reason": "only the thread's owner may answer"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """The verified actor of one run.

    Attributes:
        user_id: The customer whose account the run acts on (None if there is none).
        actor: Who drives the run (audit rows name them).
        roles: The actor's roles.
        verified: Whether the identity comes from LangGraph server credentials.
        refused: Why the run's identity claims are refused (empty when they are not).
    """

    user_id: str | None
    actor: str
    roles: tuple[str, ...]
    verified: bool = False
    refused: str = ""

    def owns(self, owner: str | None) -> bool:
        """Return whether this actor is the customer ``owner`` acting for themselves."""
        return (not self.refused and owner is not None and self.user_id == owner
                and CUSTOMER_ROLE in self.roles)


def _field(user: Any, name: str) -> Any:
    """Read ``name`` from the server's user object (a mapping, or a proxy with attributes)."""
    getter = getattr(user, "get", None)
    if callable(getter):
        try:
            value = getter(name)
        except Exception:  # a proxy whose dict() fails: fall back to attributes
            value = None
        if value is not None:
            return value
    try:
        return getattr(user, name, None)
    except Exception:
        return None


def _context(context: Any) -> AirlockContext:
    if isinstance(context, AirlockContext):
        return context
    if isinstance(context, Mapping):
        known = {k: context[k] for k in ("user_id", "actor", "roles") if k in context}
        try:
            return AirlockContext(**known)
        except TypeError:
            return AirlockContext()
    return AirlockContext()


def resolve_identity(config: Mapping[str, Any] | None, context: Any) -> Identity:
    """Return who this run acts for.

    Args:
        config: The run's config (``configurable`` may hold the server's authenticated user).
        context: The runtime context (an ``AirlockContext``, a mapping, or None).

    Returns:
        The identity; ``refused`` is set when the context contradicts the credentials or the
        authenticated user is not a customer.
    """
    configurable = (config or {}).get("configurable") or {}
    ctx = _context(context)
    user = configurable.get(AUTH_USER_KEY)
    user_id = configurable.get(AUTH_USER_ID_KEY)
    if user is None and not user_id:
        # No server credentials: the caller (the app) authenticated the customer itself.
        return Identity(user_id=ctx.user_id, actor=ctx.actor or ctx.user_id or "anonymous",
                        roles=tuple(ctx.roles or ()))
    identity = str(_field(user, "identity") or user_id or "") if user is not None else str(user_id)
    customer = _field(user, "customer_id") if user is not None else None
    raw_roles = _field(user, "roles") if user is not None else None
    roles = tuple(str(r) for r in raw_roles) if isinstance(raw_roles, list | tuple) else ()
    customer = str(customer) if customer and CUSTOMER_ROLE in roles else None
    refused = ""
    if customer is None:
        refused = "the authenticated user is not a customer"
    elif ctx.user_id is not None and ctx.user_id != customer:
        refused = "the context user_id is not the authenticated customer"
    elif ctx.actor is not None and ctx.actor not in (identity, customer):
        refused = "the context actor is not the authenticated user"
    return Identity(user_id=customer, actor=identity or "anonymous", roles=roles, verified=True,
                    refused=refused)


def keep_first(current: str | None, new: str | None) -> str | None:
    """Reduce ``owner``: the first customer recorded keeps the thread."""
    return current if current else new


def _signed_review(value: Any) -> bool:
    # A review decision counts only with the application's signature (checked by the review
    # hook), so only the app can produce one; a confirmation is never theirs to give.
    return isinstance(value, Mapping) and "signature" in value and "action" not in value


def refuse_foreign_answers(config: Mapping[str, Any], who: Identity, owner: str | None) -> bool:
    """Turn the answers this run brings into :data:`NOT_AN_ANSWER` unless ``who`` may give them.

    The owner (as a customer) may answer anything; anyone else (not refused: a reviewer, the
    timeout sweeper) only with a review decision signed by the application, which the review
    hook verifies against the thread, the call and the case; nothing shaped like a confirmation.

    Call it at the top of a node, before any ``interrupt()``: LangGraph has already matched
    the run's resume values to the node's interrupts, and stores the replaced value as the
    answer, so the owner's later runs replay a refusal and the gate is asked again.

    Args:
        config: The node's config (holds the task's resume values).
        who: The run's identity.
        owner: The thread's owner.

    Returns:
        True if answers of this run are refused.
    """
    if who.owns(owner):
        return False
    def keep(value: Any) -> bool:
        return not who.refused and _signed_review(value)

    configurable = config.get("configurable") or {}
    pad = configurable.get(CONFIG_KEY_SCRATCHPAD)
    if pad is None:
        return True
    # An answer addressed by interrupt id is appended last to the task's resume list; earlier
    # entries were stored by earlier runs and are left as they were judged then.
    fresh = (configurable.get(CONFIG_KEY_RESUME_MAP) or {}).values()
    if pad.resume and any(pad.resume[-1] is v for v in fresh) and not keep(pad.resume[-1]):
        pad.resume[-1] = dict(NOT_AN_ANSWER)
    # An answer without an id reaches the node's next interrupt through the null resume.
    original = pad.get_null_resume

    def guarded(consume: bool = False) -> Any:
        value = original(consume)
        return value if value is None or keep(value) else dict(NOT_AN_ANSWER)

    object.__setattr__(pad, "get_null_resume", guarded)
    return True
