"""Runtime context passed to every run (LangGraph ``context_schema``)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["AirlockContext"]


@dataclass(kw_only=True)
class AirlockContext:
    """Who is acting on this run; explicit values beat environment variables.

    Attributes:
        user_id: The authenticated customer the thread belongs to. Ownership checks use
            this value, never a user id the model put in tool arguments.
        actor: Who drives this run (the customer id, or a reviewer's name on a resume).
        roles: Roles of the actor, e.g. ``["customer"]`` or ``["reviewer", "supervisor"]``.
    """

    user_id: str | None = None
    actor: str | None = None
    roles: list[str] = field(default_factory=lambda: ["customer"])
