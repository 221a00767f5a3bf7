"""Output layer ``schema``: validate a JSON answer against the policy's JSON schema."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from nodes.guards.base import Action, GuardContext, GuardResult, register_guard
from nodes.guards.output._common import _result

__all__ = ["SchemaGuard", "validate_json_schema"]

_JSON_FENCE = re.compile(r"^```(?:json|JSON)?[ \t]*\n(.*)\n```[ \t]*$", re.DOTALL)
_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
}


def _pointer(path: Sequence[str | int]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)


def validate_json_schema(
    instance: Any, schema: Mapping[str, Any] | bool, *, max_errors: int = 10
) -> list[dict[str, str]]:
    """Validate ``instance`` against a JSON Schema subset and return the errors.

    Supported: ``type``, ``enum``, ``const``, ``properties``, ``required``,
    ``additionalProperties``, ``minProperties``/``maxProperties``, ``items``,
    ``minItems``/``maxItems``, ``uniqueItems``, ``minLength``/``maxLength``, ``pattern``,
    ``minimum``/``maximum``, ``exclusiveMinimum``/``exclusiveMaximum``, ``multipleOf``,
    ``allOf``/``anyOf``/``oneOf``/``not``, local ``$ref`` (``#/$defs/...``,
    ``#/definitions/...``) and boolean schemas. Other keywords are ignored.

    Returns:
        Up to ``max_errors`` errors as ``{"path": JSON pointer, "keyword": ...}``; no values,
        so errors can be logged.
    """
    root = schema
    errors: list[dict[str, str]] = []

    def resolve(ref: str) -> Mapping[str, Any] | bool:
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref is supported, got {ref!r}")
        node: Any = root
        for part in [p for p in ref[1:].split("/") if p]:
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def fail(path: list[str | int], keyword: str) -> None:
        if len(errors) < max_errors:
            errors.append({"path": _pointer(path), "keyword": keyword})

    def check(value: Any, sch: Mapping[str, Any] | bool, path: list[str | int], depth: int) -> None:
        if depth > 64:
            fail(path, "depth")
            return
        if sch is True:
            return
        if sch is False:
            fail(path, "false")
            return
        assert isinstance(sch, Mapping)
        if "$ref" in sch:
            check(value, resolve(str(sch["$ref"])), path, depth + 1)
        if "type" in sch:
            types = sch["type"] if isinstance(sch["type"], list) else [sch["type"]]
            if not any(_TYPES.get(t, lambda v: False)(value) for t in types):
                fail(path, "type")
                return
        if "enum" in sch and not any(_json_equal(value, e) for e in sch["enum"]):
            fail(path, "enum")
        if "const" in sch and not _json_equal(value, sch["const"]):
            fail(path, "const")
        if isinstance(value, str):
            if "minLength" in sch and len(value) < sch["minLength"]:
                fail(path, "minLength")
            if "maxLength" in sch and len(value) > sch["maxLength"]:
                fail(path, "maxLength")
            if "pattern" in sch and not re.search(sch["pattern"], value):
                fail(path, "pattern")
        if _TYPES["number"](value):
            if "minimum" in sch and value < sch["minimum"]:
                fail(path, "minimum")
            if "maximum" in sch and value > sch["maximum"]:
                fail(path, "maximum")
            if "exclusiveMinimum" in sch and value <= sch["exclusiveMinimum"]:
                fail(path, "exclusiveMinimum")
            if "exclusiveMaximum" in sch and value >= sch["exclusiveMaximum"]:
                fail(path, "exclusiveMaximum")
            if "multipleOf" in sch:
                q = value / sch["multipleOf"]
                if not math.isclose(q, round(q), rel_tol=0, abs_tol=1e-9):
                    fail(path, "multipleOf")
        if isinstance(value, dict):
            props = sch.get("properties", {})
            for key in sch.get("required", []):
                if key not in value:
                    fail([*path, key], "required")
            if "minProperties" in sch and len(value) < sch["minProperties"]:
                fail(path, "minProperties")
            if "maxProperties" in sch and len(value) > sch["maxProperties"]:
                fail(path, "maxProperties")
            extra = sch.get("additionalProperties", True)
            for key, item in value.items():
                if key in props:
                    check(item, props[key], [*path, key], depth + 1)
                elif extra is False:
                    fail([*path, key], "additionalProperties")
                elif isinstance(extra, Mapping):
                    check(item, extra, [*path, key], depth + 1)
        if isinstance(value, list):
            if "minItems" in sch and len(value) < sch["minItems"]:
                fail(path, "minItems")
            if "maxItems" in sch and len(value) > sch["maxItems"]:
                fail(path, "maxItems")
            if sch.get("uniqueItems"):
                seen = [json.dumps(v, sort_keys=True) for v in value]
                if len(set(seen)) != len(seen):
                    fail(path, "uniqueItems")
            items = sch.get("items")
            if isinstance(items, Mapping | bool):
                for i, item in enumerate(value):
                    check(item, items, [*path, i], depth + 1)
        for sub in sch.get("allOf", []):
            check(value, sub, path, depth + 1)
        if "anyOf" in sch and not any(_valid(value, s, root) for s in sch["anyOf"]):
            fail(path, "anyOf")
        if "oneOf" in sch and sum(1 for s in sch["oneOf"] if _valid(value, s, root)) != 1:
            fail(path, "oneOf")
        if "not" in sch and _valid(value, sch["not"], root):
            fail(path, "not")

    check(instance, schema, [], 0)
    return errors


def _valid(value: Any, sub: Any, root: Any) -> bool:
    wrapped = dict(root) if isinstance(root, Mapping) else {}
    wrapped_sub = dict(sub) if isinstance(sub, Mapping) else sub
    if isinstance(wrapped_sub, dict):
        # Keep $defs reachable from the sub-schema.
        for key in ("$defs", "definitions"):
            if key in wrapped and key not in wrapped_sub:
                wrapped_sub[key] = wrapped[key]
    return not validate_json_schema(value, wrapped_sub, max_errors=1)


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _extract_json(text: str) -> str | None:
    stripped = text.strip()
    fenced = _JSON_FENCE.match(stripped)
    if fenced:
        return fenced.group(1)
    if stripped[:1] in ("{", "["):
        return stripped
    return None


@register_guard("schema")
class SchemaGuard:
    """Validate a structured (JSON) answer against the policy's JSON schema.

    Plain-prose answers pass unless ``require_json``. Decisions: BLOCK
    ``schema:invalid_json`` / ``schema:not_json`` / ``schema:invalid`` (metadata ``errors``:
    JSON pointers and keywords, no values), else ALLOW.
    """

    name: ClassVar[str]

    def __init__(
        self, *, schema: Mapping[str, Any] | bool | None = None, require_json: bool = False
    ) -> None:
        """Configure the layer with the JSON schema (None: only check the JSON parses)."""
        self.schema = schema
        self.require_json = require_json

    def check(self, text: str, ctx: GuardContext | None = None) -> GuardResult:
        """Validate ``text`` if it is JSON (or must be)."""
        raw = _extract_json(text)
        if raw is None:
            if self.require_json:
                return _result(Action.BLOCK, self.name, "schema:not_json")
            return _result(Action.ALLOW, self.name)
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            return _result(Action.BLOCK, self.name, "schema:invalid_json")
        if self.schema is None:
            return _result(Action.ALLOW, self.name, metadata={"json": True})
        errors = validate_json_schema(value, self.schema)
        if errors:
            return _result(Action.BLOCK, self.name, "schema:invalid", metadata={"errors": errors})
        return _result(Action.ALLOW, self.name, metadata={"json": True})
