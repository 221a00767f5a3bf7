"""Guard protocol, result type and registry shared by every guard layer.

A guard layer is one class behind the :class:`Guard` protocol. It has a keyword-only
constructor (its parameters come from the policy file), a ``name`` under which it is
registered, and a ``check`` method that returns a frozen :class:`GuardResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

from graph.errors import AirlockError

__all__ = [
    "Action",
    "Direction",
    "Guard",
    "GuardContext",
    "GuardResult",
    "UnknownGuardError",
    "create_guard",
    "register_guard",
    "registered_guards",
]

Direction = Literal["input", "output", "tool_result"]


class Action(StrEnum):
    """What a guard decided about a text."""

    ALLOW = "allow"
    BLOCK = "block"
    MODIFY = "modify"
    ESCALATE = "escalate"


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardContext:
    """Per-call context a guard may use; it never carries raw PII itself.

    Attributes:
        direction: Which stream the text comes from.
        thread_id: The conversation thread, used to key the PII vault.
        user_id: The signed-in customer, if any.
        vault: The per-thread PII vault, or None when PII masking is off.
    """

    direction: Direction = "input"
    thread_id: str | None = None
    user_id: str | None = None
    vault: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardResult:
    """The frozen outcome of one guard layer on one text.

    Attributes:
        action: ALLOW, BLOCK, MODIFY or ESCALATE.
        layer: Registered name of the layer that decided.
        reason: Short machine-readable reason (never contains raw PII).
        scores: Classifier scores or other numbers behind the decision.
        text: The text after this layer (masked or normalised); None if unchanged.
        latency_ms: Wall time the layer took.
        metadata: Extra, PII-free detail (matched pattern ids, entity counts...).
    """

    action: Action
    layer: str
    reason: str = ""
    scores: Mapping[str, float] = field(default_factory=dict)
    text: str | None = None
    latency_ms: float = 0.0
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (without the possibly long text)."""
        return {
            "action": self.action.value,
            "layer": self.layer,
            "reason": self.reason,
            "scores": {k: round(float(v), 4) for k, v in self.scores.items()},
            "latency_ms": round(self.latency_ms, 3),
            "metadata": dict(self.metadata),
        }


@runtime_checkable
class Guard(Protocol):
    """One guard layer: a pure-ish check of a text in a context."""

    name: ClassVar[str]

    def check(self, text: str, ctx: GuardContext) -> GuardResult:
        """Check ``text`` and return the layer's decision."""
        ...


class UnknownGuardError(AirlockError, KeyError):
    """Raised when a policy names a guard that is not registered."""


_REGISTRY: dict[str, type[Any]] = {}
G = TypeVar("G")


def register_guard(name: str) -> Callable[[type[G]], type[G]]:
    """Register a guard class under ``name`` (a class decorator)."""

    def decorate(cls: type[G]) -> type[G]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"guard {name!r} is already registered by {_REGISTRY[name]!r}")
        cls.name = name  # type: ignore[attr-defined]
        _REGISTRY[name] = cls
        return cls

    return decorate


def registered_guards() -> Mapping[str, type[Any]]:
    """Return the registry (name to class), importing the built-in layers first."""
    import nodes.guards.layers  # noqa: F401  (registers the built-in layers)

    return dict(_REGISTRY)


def create_guard(name: str, /, **params: Any) -> Guard:
    """Instantiate the guard registered as ``name`` with keyword ``params``."""
    registry = registered_guards()
    try:
        cls = registry[name]
    except KeyError:
        known = ", ".join(sorted(registry)) or "none"
        raise UnknownGuardError(f"unknown guard {name!r}; registered guards: {known}") from None
    guard: Guard = cls(**params)
    return guard
