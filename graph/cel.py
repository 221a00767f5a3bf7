"""Compile and evaluate CEL conditions (never Python eval)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cel

from graph.errors import AirlockError

__all__ = ["CelError", "Condition", "render_template"]


class CelError(AirlockError, ValueError):
    """Raised when a CEL expression does not compile or cannot be evaluated."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled CEL expression; compile once, evaluate in microseconds."""

    source: str
    _program: Any = field(repr=False, compare=False)

    @classmethod
    def compile(cls, source: str) -> Condition:
        """Compile ``source`` or raise :class:`CelError` with the parser's reason."""
        if not source or not source.strip():
            raise CelError("empty CEL expression")
        try:
            program = cel.compile(source)
        except (ValueError, RuntimeError) as exc:
            raise CelError(str(exc).strip()) from None
        return cls(source, program)

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """Evaluate against ``variables``; any failure becomes :class:`CelError`."""
        try:
            return self._program.execute(dict(variables))
        except KeyError as exc:
            raise CelError(f"{self.source!r}: no such field {exc}") from None
        except Exception as exc:  # the extension raises several types
            raise CelError(f"{self.source!r}: {type(exc).__name__}: {exc}") from None

    def test(self, variables: Mapping[str, Any]) -> bool:
        """Evaluate a condition that must return a bool."""
        value = self.evaluate(variables)
        if not isinstance(value, bool):
            raise CelError(f"{self.source!r} returned {type(value).__name__}, expected bool")
        return value


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}")


def _lookup(variables: Mapping[str, Any], path: str) -> Any:
    value: Any = variables
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            raise KeyError(path)
    return value


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def render_template(template: str, variables: Mapping[str, Any]) -> str:
    """Fill ``{args.x}`` / ``{facts.a.b}`` placeholders; unknown paths render as '?'."""

    def sub(match: re.Match[str]) -> str:
        try:
            return _format(_lookup(variables, match[1]))
        except KeyError:
            return "?"

    return _PLACEHOLDER.sub(sub, template)


def template_paths(template: str) -> list[str]:
    """Return the dotted paths a template refers to."""
    return _PLACEHOLDER.findall(template)
