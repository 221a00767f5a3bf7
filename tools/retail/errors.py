"""Errors raised by the retail tools."""

from __future__ import annotations

from graph.errors import AirlockError

__all__ = ["ToolError"]


class ToolError(AirlockError):
    """A refused request the model may see and react to (unknown id, not pending, short balance...).

    The message is customer-safe: it names ids the caller supplied and never another
    customer's data.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
