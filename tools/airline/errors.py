"""Errors raised by the airline tools."""

from __future__ import annotations

from graph.errors import AirlockError

__all__ = ["ToolError"]


class ToolError(AirlockError):
    """A domain error the model may see and react to (unknown id, not enough balance...).

    The message is customer-safe: it names ids the caller already supplied and never
    contains another customer's data.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
