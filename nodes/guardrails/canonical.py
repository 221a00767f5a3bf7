"""Canonical input: tool arguments and customer text in the one form every guardrail sees.

Whatever a model (or a client) sends is checked here before any rule, schema or store looks
at it: arguments must be a JSON object of JSON values, numbers finite, strings free of NUL,
other control characters and lone surrogates (Postgres, JSON encoders and chat APIs reject
them, so letting one through makes a later step raise), and the whole bounded in depth and
size. Every accepted string is NFC-normalised, so two spellings of the same text are one
value for the rules and for the write. A refusal is an :class:`InvalidArgumentsError` whose
``reason`` names the offending path and never echoes the value (it may be PII).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from typing import Any

from graph.errors import AirlockError

__all__ = [
    "MAX_DEPTH",
    "MAX_ITEMS",
    "MAX_STRING",
    "InvalidArgumentsError",
    "canonical_arguments",
    "canonical_text",
    "text_problem",
]

MAX_DEPTH = 8  # nesting of objects and arrays below the arguments object
MAX_ITEMS = 1_000  # values (scalars, arrays, objects) in one set of arguments
MAX_STRING = 10_000  # characters in one string
MAX_INT = 2**53  # beyond this an integer does not survive a JSON round trip in most clients
_ALLOWED_CONTROLS = frozenset("\t\n\r")


class InvalidArgumentsError(AirlockError, ValueError):
    """Input that cannot be canonicalised; ``reason`` is safe to show to the model or customer.

    Attributes:
        reason: What is wrong and where (a path like ``args.passengers[0].name``), no values.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def text_problem(text: str) -> str | None:
    """Return why ``text`` cannot be stored or sent as-is, or None when it is clean."""
    for char in text:
        code = ord(char)
        if code == 0:
            return "contains a NUL character"
        if 0xD800 <= code <= 0xDFFF:
            return "contains an unpaired surrogate (not valid Unicode)"
        if char not in _ALLOWED_CONTROLS and unicodedata.category(char) == "Cc":
            return "contains a control character"
    return None


def canonical_text(text: object, *, max_length: int = MAX_STRING, what: str = "text") -> str:
    """Return ``text`` NFC-normalised, or raise InvalidArgumentsError naming the problem.

    Args:
        text: The value to check; anything but a str is refused.
        max_length: The most characters accepted.
        what: How the reason names the value (e.g. ``"message"``).

    Raises:
        InvalidArgumentsError: Not a string, too long, or holding NUL, other control
            characters or lone surrogates.
    """
    if not isinstance(text, str):
        raise InvalidArgumentsError(f"{what} must be a string, not {_json_type(text)}")
    if len(text) > max_length:
        raise InvalidArgumentsError(f"{what} is too long (more than {max_length} characters)")
    problem = text_problem(text)
    if problem is not None:
        raise InvalidArgumentsError(f"{what} {problem}")
    return unicodedata.normalize("NFC", text)


def canonical_arguments(raw: object) -> dict[str, Any]:
    """Return tool arguments as a canonical JSON object, or raise InvalidArgumentsError.

    Args:
        raw: What the model sent as the call's arguments.

    Returns:
        A new dict of plain JSON values (dict, list, str, int, float, bool, None) with every
        string and key NFC-normalised.

    Raises:
        InvalidArgumentsError: Not an object; a key that is not a string; a value that is not
            JSON (bytes, sets, objects); a non-finite or out-of-range number; a string with
            NUL, other control characters or lone surrogates; nesting deeper than
            ``MAX_DEPTH``, more than ``MAX_ITEMS`` values or a string longer than ``MAX_STRING``.
    """
    if not isinstance(raw, Mapping):
        raise InvalidArgumentsError(f"arguments must be a JSON object, not {_json_type(raw)}")
    budget = [MAX_ITEMS]
    result = _value(raw, "args", 0, budget)
    assert isinstance(result, dict)
    return result


def _value(value: object, path: str, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise InvalidArgumentsError(f"{path}: arguments are too large (more than {MAX_ITEMS} values)")
    # bool before int: True is an int in Python, and stays a bool here.
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise InvalidArgumentsError(f"{path}: number out of range")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgumentsError(f"{path}: numbers must be finite (no NaN or Infinity)")
        return float(value)
    if isinstance(value, str):
        return canonical_text(value, what=path)
    if depth >= MAX_DEPTH and isinstance(value, Mapping | list | tuple):
        raise InvalidArgumentsError(f"{path}: nested too deeply (more than {MAX_DEPTH} levels)")
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgumentsError(f"{path}: object keys must be strings")
            name = canonical_text(key, max_length=200, what=f"{path}: a key")
            if name in out:
                # Two keys that differ only in normalisation would silently overwrite each other.
                raise InvalidArgumentsError(f"{path}: duplicate key after normalisation")
            out[name] = _value(item, f"{path}.{name}", depth + 1, budget)
        return out
    if isinstance(value, list | tuple):
        return [_value(item, f"{path}[{i}]", depth + 1, budget) for i, item in enumerate(value)]
    raise InvalidArgumentsError(f"{path}: {_json_type(value)} is not a JSON value")


def _json_type(value: object) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"
