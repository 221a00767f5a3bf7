"""Type-check CEL conditions against the declared shapes of their variables, at policy load.

The CEL runtime (:mod:`cel`) compiles any syntactically valid expression: a misspelled fact
(``facts.reservation.exsts``), an unknown function or a condition that returns a number only
fails when a customer's call reaches it, and a rule that cannot be evaluated is a guardrail
that silently does something else. This module parses the expression again (the CEL grammar
of the spec, without the optional syntax the runtime refuses too) and infers a type for every
node from :class:`Shape` descriptions of ``args``, ``facts``, ``result`` and ``state``:

* an identifier must be a declared variable (or a macro's loop variable);
* a field must exist on a shape that declares its fields (a ``map`` of unknown keys, and
  ``dyn``, accept any field);
* a function must be one the runtime implements, with operands of types it accepts (no
  ``double + int``: the runtime refuses to mix them);
* the whole condition must be a boolean.

Shapes come from data: :func:`shape_of_value` reads a sample value (the domain's neutral
facts), :func:`shape_of_schema` a JSON schema (a tool's argument model).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graph.errors import AirlockError

__all__ = [
    "BOOL",
    "DYN",
    "CelTypeError",
    "Shape",
    "check_condition",
    "check_path",
    "merge_shapes",
    "shape_of_schema",
    "shape_of_value",
]

MAX_EXPRESSION_CHARS = 8_000
MAX_DEPTH = 64


class CelTypeError(AirlockError, ValueError):
    """A condition that would fail, or mean something else, when evaluated."""


@dataclass(frozen=True)
class Shape:
    """The static type of a CEL value.

    Attributes:
        kind: ``bool``, ``int``, ``uint``, ``double``, ``string``, ``bytes``, ``null``,
            ``timestamp``, ``duration``, ``type``, ``list``, ``map``, ``object`` or ``dyn``.
        elem: The element type of a list, the value type of a map.
        fields: The declared fields of an ``object`` (a map whose keys are known).
        name: How messages refer to the value (``facts.reservation``).
        note: Why an ``object`` has no fields yet (e.g. ``result`` before the tool ran).
    """

    kind: str
    elem: Shape | None = None
    fields: Mapping[str, Shape] = field(default_factory=dict)
    name: str = ""
    note: str = ""

    def describe(self) -> str:
        """Return the type as CEL writes it (``list(string)``, ``map(string, dyn)``)."""
        if self.kind == "list":
            return f"list({self.elem.describe() if self.elem else 'dyn'})"
        if self.kind in ("map", "object"):
            return f"map(string, {self.elem.describe() if self.elem else 'dyn'})"
        return self.kind


DYN = Shape("dyn")
BOOL = Shape("bool")
INT = Shape("int")
UINT = Shape("uint")
DOUBLE = Shape("double")
STRING = Shape("string")
BYTES = Shape("bytes")
NULL = Shape("null")
TIMESTAMP = Shape("timestamp")
DURATION = Shape("duration")
TYPE = Shape("type")
_NUMBERS = {"int", "uint", "double"}
_TYPE_NAMES = {"bool", "int", "uint", "double", "string", "bytes", "list", "map", "null_type", "type"}


def shape_of_value(value: Any, name: str = "") -> Shape:
    """Return the shape of a sample JSON-like value; an empty list or mapping holds ``dyn``."""
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return DOUBLE
    if isinstance(value, str):
        return STRING
    if value is None:
        return DYN
    if isinstance(value, Mapping):
        if not value:
            return Shape("map", elem=DYN, name=name)
        return Shape("object", name=name, fields={
            str(k): shape_of_value(v, f"{name}.{k}" if name else str(k)) for k, v in value.items()
        })
    if isinstance(value, list | tuple):
        elems = {shape_of_value(v).describe(): shape_of_value(v, name) for v in value}
        return Shape("list", elem=next(iter(elems.values())) if len(elems) == 1 else DYN, name=name)
    return DYN


def shape_of_schema(schema: Mapping[str, Any], name: str = "") -> Shape:
    """Return the shape of a JSON schema (as pydantic writes it, ``$defs`` resolved)."""
    defs = schema.get("$defs", {})

    def walk(node: Mapping[str, Any], path: str) -> Shape:
        if "$ref" in node:
            return walk(defs.get(str(node["$ref"]).rsplit("/", 1)[-1], {}), path)
        for key in ("anyOf", "oneOf"):
            if key in node:
                options = [walk(o, path) for o in node[key] if o.get("type") != "null"]
                kinds = {o.describe() for o in options}
                return options[0] if len(kinds) == 1 else DYN
        kind = node.get("type")
        if kind == "object":
            props = node.get("properties")
            if props is None:
                return Shape("map", elem=DYN, name=path)
            return Shape("object", name=path, fields={
                k: walk(v, f"{path}.{k}" if path else k) for k, v in props.items()
            })
        if kind == "array":
            return Shape("list", elem=walk(node.get("items", {}), path), name=path)
        simple = {"string": STRING, "integer": INT, "number": DOUBLE, "boolean": BOOL, "null": NULL}
        if isinstance(kind, str) and kind in simple:
            return simple[kind]
        if "enum" in node or "const" in node:
            values = node.get("enum", [node.get("const")])
            return shape_of_value(values[0]) if values else DYN
        return DYN

    return walk(schema, name)


def merge_shapes(shapes: Iterable[Shape], name: str) -> Shape:
    """Return one object shape holding every field any of ``shapes`` declares.

    Used for ``args`` of a rule that applies to every tool: a field no tool has is an error,
    a field two tools type differently is ``dyn``.
    """
    fields: dict[str, Shape] = {}
    for shape in shapes:
        for key, sub in shape.fields.items():
            if key in fields and fields[key].describe() != sub.describe():
                fields[key] = DYN
            else:
                fields.setdefault(key, sub)
    return Shape("object", name=name, fields=fields)


# --------------------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>(?:[rR][bB]?|[bB][rR]?)?(?:'''(?:[^\\]|\\.)*?'''|\"\"\"(?:[^\\]|\\.)*?\"\"\"
        |'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"))
  | (?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+[uU]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|\||&&|==|!=|<=|>=|[-+*/%!<>?:.,()\[\]{}])
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(source: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            raise CelTypeError(f"unexpected character {source[pos]!r} at column {pos + 1}")
        kind = match.lastgroup or ""
        if kind != "ws":
            out.append(_Tok(kind, match.group(), pos))
        pos = match.end()
    out.append(_Tok("end", "", pos))
    return out


# --------------------------------------------------------------------------- checker

_RELOPS = {"==", "!=", "<", "<=", ">", ">=", "in"}
_GETTERS = {
    "getFullYear", "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear",
    "getHours", "getMinutes", "getSeconds", "getMilliseconds",
}
_MACROS = {"all", "exists", "exists_one", "map", "filter"}
_CONVERSIONS = {"int": INT, "uint": UINT, "double": DOUBLE, "string": STRING, "bytes": BYTES,
                "dyn": DYN, "type": TYPE, "duration": DURATION, "timestamp": TIMESTAMP}


def _is(shape: Shape, *kinds: str) -> bool:
    return shape.kind == "dyn" or shape.kind in kinds


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Checker:
    def __init__(self, source: str, variables: Mapping[str, Shape]) -> None:
        self.toks = _tokens(source)
        self.i = 0
        self.scopes: list[dict[str, Shape]] = [dict(variables)]
        self.depth = 0

    # -- token helpers
    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def take(self, text: str | None = None) -> _Tok:
        tok = self.tok
        if text is not None and tok.text != text:
            found = tok.text or "the end"
            raise CelTypeError(f"expected {text!r} at column {tok.pos + 1}, found {found!r}")
        self.i += 1
        return tok

    def at(self, *texts: str) -> bool:
        return self.tok.kind in ("op", "ident") and self.tok.text in texts

    # -- grammar (one method per precedence level, as in the CEL spec)
    def expr(self) -> Shape:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CelTypeError(f"expression nested deeper than {MAX_DEPTH} levels")
        cond = self.logical("||")
        if self.at("?"):
            self.take("?")
            self.require_bool(cond, "the condition of '? :'")
            left = self.logical("||")
            self.take(":")
            right = self.expr()
            cond = left if left.describe() == right.describe() else DYN
        self.depth -= 1
        return cond

    def logical(self, op: str) -> Shape:
        sub = (lambda: self.logical("&&")) if op == "||" else self.relation
        left = sub()
        while self.at(op):
            self.take()
            right = sub()
            self.require_bool(left, f"the left operand of {op!r}")
            self.require_bool(right, f"the right operand of {op!r}")
            left = BOOL
        return left

    def relation(self) -> Shape:
        left = self.additive()
        while self.at(*_RELOPS):
            op = self.take().text
            right = self.additive()
            self.compare(op, left, right)
            left = BOOL
        return left

    def additive(self) -> Shape:
        left = self.multiplicative()
        while self.at("+", "-"):
            op = self.take().text
            left = self.arithmetic(op, left, self.multiplicative())
        return left

    def multiplicative(self) -> Shape:
        left = self.unary()
        while self.at("*", "/", "%"):
            op = self.take().text
            left = self.arithmetic(op, left, self.unary())
        return left

    def unary(self) -> Shape:
        if self.at("!"):
            self.take()
            operand = self.unary()
            self.require_bool(operand, "the operand of '!'")
            return BOOL
        if self.at("-"):
            self.take()
            operand = self.unary()
            if not _is(operand, "int", "double"):
                raise CelTypeError(f"'-' needs an int or a double, not {operand.describe()}")
            return operand
        return self.member()

    def member(self) -> Shape:
        shape, name = self.primary()
        while self.at(".", "["):
            if self.take().text == "[":
                index = self.expr()
                self.take("]")
                shape, name = self.index(shape, index), f"{name}[...]"
                continue
            ident = self.take()
            if ident.kind != "ident":
                raise CelTypeError(f"expected a field name after '.' at column {ident.pos + 1}")
            if self.at("("):
                shape, name = self.method(shape, name, ident.text), f"{name}.{ident.text}()"
            else:
                shape, name = self.select(shape, name, ident.text), f"{name}.{ident.text}"
        return shape

    def primary(self) -> tuple[Shape, str]:
        tok = self.take()
        if tok.kind == "number":
            text = tok.text.lower()
            if text.endswith("u"):
                return UINT, tok.text
            is_float = "." in text or ("e" in text and not text.startswith("0x"))
            return (DOUBLE if is_float else INT), tok.text
        if tok.kind == "string":
            prefix = tok.text[:min(i for i in (tok.text.find("'"), tok.text.find('"')) if i >= 0)]
            return (BYTES if "b" in prefix.lower() else STRING), tok.text
        if tok.kind == "ident":
            if tok.text in ("true", "false"):
                return BOOL, tok.text
            if tok.text == "null":
                return NULL, tok.text
            if self.at("("):
                return self.function(tok.text), f"{tok.text}()"
            for scope in reversed(self.scopes):
                if tok.text in scope:
                    return scope[tok.text], tok.text
            if tok.text in _TYPE_NAMES:
                return TYPE, tok.text
            known = {k for scope in self.scopes for k in scope}
            raise CelTypeError(
                f"unknown variable {tok.text!r}{_suggest(tok.text, known)}; "
                f"this rule can use {', '.join(sorted(known))}"
            )
        if tok.text == "(":
            shape = self.expr()
            self.take(")")
            return shape, "(...)"
        if tok.text == "[":
            elems = self.items("]")
            kinds = {e.describe() for e in elems}
            return Shape("list", elem=elems[0] if len(kinds) == 1 else DYN), "[...]"
        if tok.text == "{":
            values: list[Shape] = []
            while not self.at("}"):
                self.expr()
                self.take(":")
                values.append(self.expr())
                if not self.at("}"):
                    self.take(",")
            self.take("}")
            kinds = {v.describe() for v in values}
            return Shape("map", elem=values[0] if len(kinds) == 1 else DYN), "{...}"
        found = tok.text or "the end of the expression"
        raise CelTypeError(f"unexpected {found!r} at column {tok.pos + 1}")

    def items(self, close: str) -> list[Shape]:
        out: list[Shape] = []
        while not self.at(close):
            out.append(self.expr())
            if not self.at(close):
                self.take(",")
        self.take(close)
        return out

    # -- typing rules
    def require_bool(self, shape: Shape, what: str) -> None:
        if not _is(shape, "bool"):
            raise CelTypeError(f"{what} must be a boolean, not {shape.describe()}")

    def compare(self, op: str, left: Shape, right: Shape) -> None:
        if op == "in":
            if not _is(right, "list", "map", "object"):
                raise CelTypeError(f"'in' needs a list or a map on its right, not {right.describe()}")
            return
        if "dyn" in (left.kind, right.kind) or "null" in (left.kind, right.kind):
            return
        if left.kind in _NUMBERS and right.kind in _NUMBERS:
            return
        if op in ("==", "!=") and {left.kind, right.kind} <= {"map", "object"}:
            return
        if left.kind != right.kind:
            raise CelTypeError(f"cannot compare {left.describe()} {op} {right.describe()}")
        if op not in ("==", "!=") and left.kind not in ("string", "bytes", "timestamp", "duration", "bool"):
            raise CelTypeError(f"'{op}' does not order {left.describe()} values")

    def arithmetic(self, op: str, left: Shape, right: Shape) -> Shape:
        if left.kind == "dyn" or right.kind == "dyn":
            return left if right.kind == "dyn" else right
        kinds = (left.kind, right.kind)
        if op == "+" and left.kind == right.kind and left.kind in ("string", "bytes", "list"):
            return left
        if op in "+-" and set(kinds) <= {"timestamp", "duration"}:
            return TIMESTAMP if "timestamp" in kinds and kinds != ("timestamp", "timestamp") else DURATION
        if left.kind == right.kind and left.kind in _NUMBERS and not (op == "%" and left.kind == "double"):
            return left
        raise CelTypeError(
            f"no operator {left.describe()} {op} {right.describe()}: the runtime does not mix types "
            "(convert with int(), uint() or double())"
        )

    def select(self, shape: Shape, name: str, field_name: str) -> Shape:
        if shape.kind == "object":
            if field_name in shape.fields:
                return shape.fields[field_name]
            if shape.note:
                raise CelTypeError(f"{name}.{field_name}: {shape.note}")
            raise CelTypeError(
                f"unknown field {name}.{field_name}{_suggest(field_name, shape.fields)}; "
                f"{name} has {', '.join(sorted(shape.fields)) or 'no fields'}"
            )
        if shape.kind == "map":
            if shape.note:
                raise CelTypeError(f"{name}.{field_name}: {shape.note}")
            return shape.elem or DYN
        if shape.kind == "dyn":
            return DYN
        raise CelTypeError(f"{name} is {shape.describe()}, it has no field {field_name!r}")

    def index(self, shape: Shape, index: Shape) -> Shape:
        if shape.kind == "list":
            if not _is(index, "int", "uint"):
                raise CelTypeError(f"a list index must be an int, not {index.describe()}")
            return shape.elem or DYN
        if shape.kind in ("map", "object"):
            if shape.kind == "object" and shape.fields:
                kinds = {f.describe() for f in shape.fields.values()}
                return next(iter(shape.fields.values())) if len(kinds) == 1 else DYN
            return shape.elem or DYN
        if shape.kind == "dyn":
            return DYN
        raise CelTypeError(f"{shape.describe()} cannot be indexed")

    def args(self) -> list[Shape]:
        self.take("(")
        return self.items(")")

    def function(self, name: str) -> Shape:
        if name == "has":
            self.take("(")
            self.member()
            if self.toks[self.i - 1].kind != "ident" or self.toks[self.i - 2].text != ".":
                raise CelTypeError("has() takes a field selection such as has(args.x)")
            self.take(")")
            return BOOL
        params = self.args()
        if name == "size" and len(params) == 1:
            return self.sized(params[0])
        if name in _CONVERSIONS and len(params) == 1:
            return _CONVERSIONS[name]
        if name == "matches" and len(params) == 2:
            return BOOL
        raise CelTypeError(
            f"unknown function {name}() with {len(params)} argument(s); the runtime has "
            "size, has, int, uint, double, string, bytes, dyn, type, duration, timestamp, matches"
        )

    def sized(self, shape: Shape) -> Shape:
        if not _is(shape, "string", "bytes", "list", "map", "object"):
            raise CelTypeError(f"size() needs a string, bytes, list or map, not {shape.describe()}")
        return INT

    def method(self, target: Shape, name: str, method: str) -> Shape:
        if method in _MACROS:
            return self.macro(target, name, method)
        params = self.args()
        if method == "size" and not params:
            return self.sized(target)
        if method in ("contains", "startsWith", "endsWith", "matches") and len(params) == 1:
            if not _is(target, "string") or not _is(params[0], "string"):
                raise CelTypeError(f"{name}.{method}() needs strings, not {target.describe()}")
            return BOOL
        if method in _GETTERS and len(params) <= 1 and _is(target, "timestamp", "duration"):
            return INT
        raise CelTypeError(
            f"unknown method {method}() on {name} ({target.describe()}); the runtime has size, "
            "contains, startsWith, endsWith, matches, all, exists, exists_one, map, filter"
        )

    def macro(self, target: Shape, name: str, method: str) -> Shape:
        if not _is(target, "list", "map", "object"):
            raise CelTypeError(f"{name}.{method}() needs a list or a map, not {target.describe()}")
        self.take("(")
        var = self.take()
        if var.kind != "ident":
            raise CelTypeError(f"{method}() takes a variable name first, found {var.text!r}")
        self.take(",")
        elem = (target.elem or DYN) if target.kind == "list" else STRING
        self.scopes.append({var.text: elem})
        body = self.expr()
        if method == "map" and self.at(","):  # map(x, filter, transform)
            self.take(",")
            self.require_bool(body, f"the filter of {method}()")
            body = self.expr()
        self.scopes.pop()
        self.take(")")
        if method == "map":
            return Shape("list", elem=body)
        self.require_bool(body, f"the predicate of {name}.{method}()")
        return Shape("list", elem=elem) if method == "filter" else BOOL


def check_condition(source: str, variables: Mapping[str, Shape], *, want_bool: bool = True) -> Shape:
    """Infer the type of ``source``; raise :class:`CelTypeError` naming what is wrong.

    Args:
        source: A CEL expression the runtime compiled.
        variables: The shape of each variable the expression may use.
        want_bool: Refuse a result that is not a boolean (``dyn`` passes: a value of a map
            of unknown keys is checked when evaluated).
    """
    if len(source) > MAX_EXPRESSION_CHARS:
        raise CelTypeError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    checker = _Checker(source, variables)
    shape = checker.expr()
    if checker.tok.kind != "end":
        raise CelTypeError(f"unexpected {checker.tok.text!r} at column {checker.tok.pos + 1}")
    if want_bool and not _is(shape, "bool"):
        raise CelTypeError(f"the condition returns {shape.describe()}, not a boolean")
    return shape


def check_path(path: str, variables: Mapping[str, Shape]) -> Shape:
    """Check a message placeholder's dotted path (``args.amount``) like a field selection."""
    parts: Sequence[str] = path.split(".")
    if parts[0] not in variables:
        raise CelTypeError(f"unknown variable {parts[0]!r}; use {', '.join(sorted(variables))}")
    return check_condition(path, variables, want_bool=False)
