"""The contract between the graph and a tool domain (airline first)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

__all__ = ["Domain", "ToolSpecLike", "describe_validation_error"]


def describe_validation_error(exc: ValidationError) -> str:
    """Summarise invalid tool arguments as ``field.path: reason; ...`` (no input values)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg']}" for e in exc.errors())


class ToolSpecLike(Protocol):
    """What the graph needs to know about one tool."""

    @property
    def name(self) -> str:
        """Return the tool name."""
        ...

    @property
    def description(self) -> str:
        """Return the description the model sees."""
        ...

    @property
    def args_schema(self) -> type[BaseModel]:
        """Return the pydantic model that validates arguments."""
        ...

    @property
    def write(self) -> bool:
        """Return True when the tool changes data or moves money."""
        ...


class Domain(Protocol):
    """A set of tools over a backend, and the facts guardrails are evaluated on."""

    @property
    def tools(self) -> Mapping[str, ToolSpecLike]:
        """Return the tools by name."""
        ...

    def model_tools(self) -> list[dict[str, Any]]:
        """Return OpenAI-style tool schemas to bind to the chat model."""
        ...

    def facts(
        self, tool: str, args: Mapping[str, Any], *, user_id: str | None,
        conversation: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Compute, by code, everything a guardrail may rely on for this call."""
        ...

    def state_token(self, tool: str, args: Mapping[str, Any], *, user_id: str | None) -> str:
        """Return a digest of the current state this call acts on (e.g. the reservation)."""
        ...

    def execute(
        self, tool: str, args: Mapping[str, Any], *, idempotency_key: str | None
    ) -> Any:
        """Run the tool against the backend; raise the domain's error type on refusal."""
        ...

    @property
    def pii_fields(self) -> Mapping[str, str]:
        """Return the argument names whose placeholders code may resolve, with each one's PII type."""
        ...

    @property
    def error_type(self) -> type[Exception]:
        """Return the exception a tool raises for a refused request (not retried)."""
        ...
