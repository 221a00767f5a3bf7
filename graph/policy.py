"""Policy files: YAML validated with pydantic, conditions compiled as CEL at load time.

A policy configures, per tool, the guardrail chain (pre-tool, idempotency, confirm,
resilience), the human escalations, and the guard pipeline layers. A policy that does
not validate fails at load with the file, the line, the rule and the reason.

Loading is strict, because a policy that loads but means something else silently drops a
guardrail: the YAML is bounded (size, nesting, no anchors or aliases) and a duplicated key is
an error (plain YAML keeps the last one); given the domain's tools and a sample of its facts,
every CEL condition and message placeholder is type-checked against the shapes of ``args``
(the tool's argument schema), ``facts``, ``result`` and ``state``; every guard layer and its
parameters are checked as start-up builds them; and a write tool without guardrails is
refused. Start-up and ``airlock policy`` run this same function.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from graph.cel import CelError, Condition, template_paths
from graph.cel_types import DYN, CelTypeError, Shape, check_condition, check_path, merge_shapes, shape_of_schema
from graph.cel_types import shape_of_value as _shape_of_value
from graph.errors import AirlockError

__all__ = [
    "ENV_REF",
    "DEFAULT_HISTORY_MESSAGES",
    "ConfirmGuardrail",
    "HistoryConfig",
    "ModelConfig",
    "check_policy_for_tools",
    "expand_env",
    "Escalation",
    "GuardLimits",
    "GuardsConfig",
    "IdempotencyGuardrail",
    "LayerConfig",
    "MAX_POLICY_BYTES",
    "Policy",
    "PolicyError",
    "PreToolCheck",
    "PreToolGuardrail",
    "ResilienceGuardrail",
    "load_policy",
    "parse_duration",
]

#: A policy is a few kilobytes of rules; anything near this is not one.
MAX_POLICY_BYTES = 512 * 1024
#: Messages of earlier turns sent to the model when the policy does not say (``model.history``):
#: about ten lookup turns; a model call then costs the same at turn 200 as at turn 10.
DEFAULT_HISTORY_MESSAGES = 40
_MAX_NESTING = 64
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
GUARDRAIL_ORDER = (
    "guardrail.pre-tool",
    "guardrail.idempotency",
    "guardrail.confirm",
    "guardrail.resilience",
)


def parse_duration(value: Any) -> float:
    """Parse '250ms', '5s', '4h', '1d' or a number of seconds into seconds."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"invalid duration {value!r}; use e.g. 250ms, 5s, 10m, 4h, 1d")
        seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return seconds


Duration = Annotated[float, Field(description="seconds; YAML accepts 250ms, 5s, 10m, 4h, 1d")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_template(template: str) -> str:
    for path in template_paths(template):
        if path.split(".", 1)[0] not in {"args", "facts", "result", "state"}:
            raise ValueError(
                f"message placeholder {{{path}}} must start with args., facts., result. or state."
            )
    return template


class PreToolCheck(_Strict):
    """One pre-tool rule: when ``when`` is true, take ``action``."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    when: str
    action: Literal["deny", "escalate", "allow"] = "deny"
    message: str = "This request is not allowed by policy."
    assignee: str | None = None

    _v_msg = field_validator("message")(classmethod(lambda cls, v: _check_template(v)))


class PreToolGuardrail(_Strict):
    """``guardrail.pre-tool``: deterministic checks before anything runs."""

    type: Literal["guardrail.pre-tool"]
    checks: list[PreToolCheck] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> PreToolGuardrail:
        ids = [c.id for c in self.checks]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate check ids: {', '.join(dupes)}")
        return self


class IdempotencyGuardrail(_Strict):
    """``guardrail.idempotency``: logical exactly-once per key."""

    type: Literal["guardrail.idempotency"]
    key_fields: list[str] = Field(alias="keyFields", min_length=1)
    ttl: Duration = 86400.0
    wait_timeout: Duration = Field(default=30.0, alias="waitTimeout")

    _v_ttl = field_validator("ttl", "wait_timeout", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )


class ConfirmGuardrail(_Strict):
    """``guardrail.confirm``: the same user confirms the exact call."""

    type: Literal["guardrail.confirm"]
    threshold: str = "true"
    message: str

    _v_msg = field_validator("message")(classmethod(lambda cls, v: _check_template(v)))


class ResilienceGuardrail(_Strict):
    """``guardrail.resilience``: timeout, retries with backoff, circuit breaker, fallback."""

    type: Literal["guardrail.resilience"]
    retries: int = Field(default=2, ge=0, le=10)
    timeout: Duration = 5.0
    backoff: Duration = 0.2
    max_backoff: Duration = Field(default=2.0, alias="maxBackoff")
    breaker_threshold: float = Field(default=0.5, alias="breakerThreshold", gt=0, le=1)
    breaker_window: int = Field(default=10, alias="breakerWindow", ge=1)
    breaker_min_calls: int = Field(default=4, alias="breakerMinCalls", ge=1)
    cooldown: Duration = 30.0
    fallback_message: str = Field(
        default="The service is unavailable. Please try again in a few minutes.",
        alias="fallbackMessage",
    )

    _v_dur = field_validator("timeout", "backoff", "max_backoff", "cooldown", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )


ToolGuardrail = Annotated[
    PreToolGuardrail | IdempotencyGuardrail | ConfirmGuardrail | ResilienceGuardrail,
    Field(discriminator="type"),
]


class Escalation(_Strict):
    """``hitl.escalate``: a human reviewer decides when ``when`` holds after a tool ran."""

    type: Literal["hitl.escalate"]
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    tool: str = "*"
    when: str
    phase: Literal["before", "after"] = "before"
    assignee: str = Field(min_length=1)
    timeout: Duration = 4 * 3600.0
    timeout_action: Literal["reject", "approve"] = Field(default="reject", alias="timeoutAction")
    description: str = "This case needs a human reviewer."
    #: What the customer is told once a reviewer approves (after the tool ran); ``{state.case}``
    #: is the case's reference. Empty: the answer stands as the model gave it.
    approved_message: str = Field(default="", alias="approvedMessage")
    allowed_decisions: list[Literal["approve", "edit", "reject"]] = Field(
        default_factory=lambda: ["approve", "edit", "reject"],  # type: ignore[arg-type]
        alias="allowedDecisions",
    )

    _v_timeout = field_validator("timeout", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )
    _v_desc = field_validator("description")(classmethod(lambda cls, v: _check_template(v)))
    _v_approved = field_validator("approved_message")(classmethod(lambda cls, v: _check_template(v)))


class LayerConfig(_Strict):
    """One layer of a guard pipeline, as listed in the policy (order matters)."""

    layer: str
    params: dict[str, Any] = Field(default_factory=dict)
    fail_open: bool = False
    only_if_escalated: bool = False
    #: This layer's time budget in milliseconds (default: ``guards.layer_budget_ms``).
    budget_ms: float | None = Field(default=None, gt=0)


class GuardLimits(_Strict):
    """The longest text each pipeline scans; a longer one is blocked unread (fail-safe)."""

    input: int = Field(default=8_000, ge=1, le=1_000_000)
    output: int = Field(default=16_000, ge=1, le=1_000_000)
    tool_result: int = Field(default=64_000, ge=1, le=1_000_000)


class GuardsConfig(_Strict):
    """Guard pipelines for user input, model output and tool results."""

    input: list[LayerConfig] = Field(default_factory=lambda: [LayerConfig(layer="prefilter")])
    output: list[LayerConfig] = Field(default_factory=list)
    tool_result: list[LayerConfig] = Field(default_factory=list)
    max_chars: GuardLimits = Field(default_factory=GuardLimits)
    #: A layer that takes longer gets the fail-safe decision (audited); see nodes/guards/pipeline.py.
    layer_budget_ms: float = Field(default=1_000.0, gt=0)
    #: What an uncertain message (the input pipeline's ESCALATE) becomes: ``block``, ``allow``,
    #: ``review`` (a human decides before the agent answers) or ``proceed`` (the agent answers
    #: at once; the message's risk is ``facts.input_risk`` for the tool rules, which must use it).
    uncertain_action: Literal["block", "allow", "review", "proceed"] = "block"
    refusal_message: str = (
        "Sorry, I can't help with that request. I can help with bookings, changes, "
        "cancellations, baggage and refunds."
    )


class HistoryConfig(_Strict):
    """How much of a conversation's earlier turns the model is sent."""

    #: The most messages of earlier turns sent with each model call (the current turn is always
    #: sent whole); the window never starts with a tool answer whose call it left out. The whole
    #: conversation stays in the database and the UI. None: every earlier message.
    max_messages: int | None = Field(default=DEFAULT_HISTORY_MESSAGES, ge=2, le=100_000)


class ModelConfig(_Strict):
    """What the model is sent."""

    history: HistoryConfig = Field(default_factory=HistoryConfig)


class Policy(_Strict):
    """A validated policy, its CEL conditions compiled once, here, and kept for every call."""

    version: Literal[1]
    name: str = "policy"
    #: The domain the policy is written for (``graph.plugins``); None: whichever is configured.
    domain: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
    tools: dict[str, list[ToolGuardrail]] = Field(default_factory=dict)
    escalations: list[Escalation] = Field(default_factory=list)
    guards: GuardsConfig = Field(default_factory=GuardsConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    _conditions: dict[str, Condition] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _compile_conditions(self) -> Policy:
        for at, source in self.condition_sources():
            if source in self._conditions:
                continue
            try:
                self._conditions[source] = Condition.compile(source)
            except CelError as exc:
                # ``at`` lets load_policy name the file and line of the condition.
                raise PydanticCustomError("cel", "CEL does not compile: {reason}", {"reason": str(exc), "at": at}
                                          ) from None
        return self

    def condition_sources(self) -> list[tuple[tuple[int | str, ...], str]]:
        """Return every CEL condition of the policy with where it is (``("tools", name, i, "threshold")``…)."""
        found: list[tuple[tuple[int | str, ...], str]] = []
        for name, chain in self.tools.items():
            for gi, guardrail in enumerate(chain):
                if isinstance(guardrail, PreToolGuardrail):
                    found.extend((("tools", name, gi, "checks", ci, "when"), c.when)
                                 for ci, c in enumerate(guardrail.checks))
                elif isinstance(guardrail, ConfirmGuardrail):
                    found.append((("tools", name, gi, "threshold"), guardrail.threshold))
        found.extend((("escalations", ei, "when"), e.when) for ei, e in enumerate(self.escalations))
        return found

    def condition(self, source: str) -> Condition:
        """Return the compiled form of one of the policy's conditions (compiled at load).

        Raises:
            CelError: ``source`` is not one of the policy's conditions and does not compile.
        """
        cond = self._conditions.get(source)
        if cond is None:  # a copy with new rules (``model_copy(update=…)`` skips validation)
            cond = self._conditions[source] = Condition.compile(source)
        return cond

    @model_validator(mode="after")
    def _proceed_needs_a_rule(self) -> Policy:
        # "proceed" without a rule on the risk is "allow" under another name: an uncertain
        # message could then write as freely as a clean one.
        if self.guards.uncertain_action == "proceed" and not self._uses_input_risk():
            raise ValueError(
                "guards.uncertain_action: proceed needs a rule that uses facts.input_risk "
                "(e.g. an escalation of writes when facts.input_risk.thread_level != 'none')"
            )
        return self

    def _uses_input_risk(self) -> bool:
        return any("facts.input_risk" in when for at, when in self.condition_sources() if at[-1] == "when")

    def guardrail(self, tool: str, kind: type[Any]) -> Any:
        """Return the tool's guardrail of class ``kind`` or None."""
        for g in self.tools.get(tool, ()):
            if isinstance(g, kind):
                return g
        return None

    def escalations_for(self, tool: str, phase: str = "after") -> list[Escalation]:
        """Return the escalations that apply to ``tool`` in ``phase``."""
        return [e for e in self.escalations if e.phase == phase and e.tool in ("*", tool)]


class PolicyError(AirlockError, ValueError):
    """A policy file that cannot be used; the message names file, line and reason."""

    def __init__(self, path: str, line: int | None, location: str, reason: str) -> None:
        self.path, self.line, self.location, self.reason = path, line, location, reason
        where = f"{path}:{line}" if line else path
        loc = f" at {location}" if location else ""
        super().__init__(f"{where}: invalid policy{loc}: {reason}")


def _node_at(root: yaml.Node | None, loc: Sequence[int | str]) -> yaml.Node | None:
    node, best = root, root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == str(part)), None)
            if nxt is None:
                # A discriminated union adds the tag (e.g. 'guardrail.confirm') to the path.
                continue
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
        else:
            continue
        best = node
    return best


def _describe(loc: Iterable[int | str], root: yaml.Node | None) -> str:
    parts: list[str] = []
    node = root
    for part in loc:
        if isinstance(part, int):
            rule_id = None
            if isinstance(node, yaml.SequenceNode) and part < len(node.value):
                node = node.value[part]
                if isinstance(node, yaml.MappingNode):
                    rule_id = next(
                        (v.value for k, v in node.value if k.value in ("id", "type", "layer")), None
                    )
            parts.append(f"[{part}]" + (f"({rule_id})" if rule_id else ""))
        else:
            if isinstance(node, yaml.MappingNode):
                nxt = next((v for k, v in node.value if k.value == part), None)
                if nxt is None:
                    continue
                node = nxt
            parts.append(f".{part}" if parts else part)
    return "".join(parts)


def _order_problem(name: str, kinds: list[str]) -> str:
    for kind in set(kinds):
        if kinds.count(kind) > 1:
            return f"tool {name!r}: {kind} appears more than once"
    expected = [k for k in GUARDRAIL_ORDER if k in kinds]
    if kinds != expected:
        return (
            f"tool {name!r}: guardrails must run in the order {' -> '.join(GUARDRAIL_ORDER)}; "
            f"got {' -> '.join(kinds)}"
        )
    return ""


def load_policy(
    path: str | Path,
    *,
    known_tools: Iterable[str] | Mapping[str, Any] | None = None,
    facts: Mapping[str, Any] | None = None,
) -> Policy:
    """Load and validate a policy file: everything start-up would refuse is refused here.

    Args:
        path: The YAML file.
        known_tools: Tool names that exist; a policy naming any other tool is refused. Given
            the domain's tool specs (a mapping to objects with ``args_schema`` and ``write``),
            conditions and placeholders are checked against each tool's arguments and a write
            tool without guardrails is refused.
        facts: A sample of the domain's facts with every key present (its neutral facts);
            given, every ``facts.…`` a rule reads must exist, with the right type.

    Raises:
        PolicyError: With the file, line, rule and reason.
    """
    p = Path(path)
    root, data = _read_yaml(p)
    if not isinstance(data, dict):
        raise PolicyError(str(p), 1, "", "the top level must be a mapping with 'version: 1'")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple((err.get("ctx") or {}).get("at") or err["loc"])
        node = _node_at(root, loc)
        line = node.start_mark.line + 1 if node is not None else None
        msg = err["msg"].removeprefix("Value error, ")
        raise PolicyError(str(p), line, _describe(loc, root), msg) from None
    for name, chain in policy.tools.items():
        problem = _order_problem(name, [g.type for g in chain])
        if problem:
            node = _node_at(root, ("tools", name))
            raise PolicyError(str(p), node.start_mark.line + 1 if node else None, f"tools.{name}", problem)
    specs: Mapping[str, Any] = {}
    if known_tools is not None:
        known = set(known_tools)
        if isinstance(known_tools, Mapping):
            specs = known_tools
        for index, name in enumerate(policy.tools):
            if name not in known:
                node = _node_at(root, ("tools", name))
                key_line = None
                if isinstance(root, yaml.MappingNode):
                    tools_node = _node_at(root, ("tools",))
                    if isinstance(tools_node, yaml.MappingNode):
                        key_line = tools_node.value[index][0].start_mark.line + 1
                raise PolicyError(
                    str(p), key_line or (node.start_mark.line + 1 if node else None),
                    f"tools.{name}", f"unknown tool {name!r}; known tools: {', '.join(sorted(known))}",
                )
        for index, esc in enumerate(policy.escalations):
            if esc.tool != "*" and esc.tool not in known:
                node = _node_at(root, ("escalations", index, "tool"))
                raise PolicyError(
                    str(p), node.start_mark.line + 1 if node else None,
                    f"escalations[{index}]({esc.id}).tool", f"unknown tool {esc.tool!r}",
                )
    _Semantics(policy, root, str(p), specs, facts).check()
    return policy


def _read_yaml(p: Path) -> tuple[yaml.Node | None, Any]:
    """Read a bounded YAML document: size, nesting, no anchors/aliases, no duplicate keys."""
    try:
        size = p.stat().st_size
        if size > MAX_POLICY_BYTES:
            raise PolicyError(str(p), None, "", f"the file is larger than {MAX_POLICY_BYTES} bytes ({size})")
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise PolicyError(str(p), None, "", f"cannot read file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(str(p), None, "", f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        _scan_bounds(text, str(p))
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        _refuse_duplicate_keys(root, str(p))
        data = yaml.SafeLoader("").construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise PolicyError(str(p), line, "", f"YAML syntax error: {getattr(exc, 'problem', exc)}") from None
    return root, data


def _scan_bounds(text: str, where: str) -> None:
    # Tokens only: linear in the text, nothing is built. An alias is refused outright rather
    # than bounded: a policy has no use for it, and a few lines of them expand to billions.
    depth = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        line = token.start_mark.line + 1
        if isinstance(token, yaml.AnchorToken | yaml.AliasToken):
            raise PolicyError(where, line, "", "YAML anchors and aliases are not allowed in a policy "
                              "(write the value out)")
        if isinstance(token, yaml.TagToken):
            raise PolicyError(where, line, "", "YAML tags are not allowed in a policy")
        if isinstance(token, yaml.BlockMappingStartToken | yaml.BlockSequenceStartToken
                      | yaml.FlowMappingStartToken | yaml.FlowSequenceStartToken):
            depth += 1
            if depth > _MAX_NESTING:
                raise PolicyError(where, line, "", f"the YAML is nested deeper than {_MAX_NESTING} levels")
        elif isinstance(token, yaml.BlockEndToken | yaml.FlowMappingEndToken | yaml.FlowSequenceEndToken):
            depth -= 1


def _refuse_duplicate_keys(root: yaml.Node | None, where: str) -> None:
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                line = key.start_mark.line + 1
                name = str(key.value)
                if name in seen:
                    raise PolicyError(
                        where, line, "", f"duplicate key {name!r} (first at line {seen[name]}); "
                        "YAML would silently keep only the last one",
                    )
                seen[name] = line
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


_STATE = Shape("object", name="state", fields={"phase": Shape("string")})
# After a decision the case exists: its reference may be shown to the customer.
_STATE_DECIDED = Shape("object", name="state", fields={"phase": Shape("string"), "case": Shape("string")})
_NO_RESULT = Shape("object", name="result", note="there is no result before the tool runs (phase: before)")
_RESULT = Shape("map", elem=DYN, name="result")


class _Semantics:
    """Type-check conditions, placeholders, key fields and layers; refuse unguarded writes."""

    def __init__(self, policy: Policy, root: yaml.Node | None, where: str,
                 specs: Mapping[str, Any], facts: Mapping[str, Any] | None) -> None:
        self.policy, self.root, self.where = policy, root, where
        self.specs = specs
        self.facts = _facts_shape(facts)
        self.args = {
            name: shape_of_schema(spec.args_schema.model_json_schema(), "args")
            for name, spec in specs.items() if hasattr(spec, "args_schema")
        }

    def fail(self, loc: Sequence[int | str], reason: str) -> PolicyError:
        node = _node_at(self.root, loc)
        line = node.start_mark.line + 1 if node is not None else None
        return PolicyError(self.where, line, _describe(loc, self.root), reason)

    def args_of(self, tool: str) -> Shape:
        if tool == "*":
            return merge_shapes(self.args.values(), "args") if self.args else DYN
        return self.args.get(tool, DYN)

    def condition(self, loc: Sequence[int | str], source: str, variables: Mapping[str, Shape]) -> None:
        try:
            check_condition(source, variables)
        except CelTypeError as exc:
            raise self.fail(loc, f"CEL condition {source.strip()!r}: {exc}") from None

    def template(self, loc: Sequence[int | str], text: str, variables: Mapping[str, Shape]) -> None:
        for path in template_paths(text):
            try:
                check_path(path, variables)
            except CelTypeError as exc:
                raise self.fail(loc, f"message placeholder {{{path}}}: {exc}") from None

    def check(self) -> None:
        for name, chain in self.policy.tools.items():
            variables = {"args": self.args_of(name), "facts": self.facts}
            for gi, g in enumerate(chain):
                loc: tuple[int | str, ...] = ("tools", name, gi)
                if isinstance(g, PreToolGuardrail):
                    for ci, c in enumerate(g.checks):
                        self.condition((*loc, "checks", ci, "when"), c.when, variables)
                        self.template((*loc, "checks", ci, "message"), c.message, variables)
                elif isinstance(g, ConfirmGuardrail):
                    self.condition((*loc, "threshold"), g.threshold, variables)
                    self.template((*loc, "message"), g.message, variables)
                elif isinstance(g, IdempotencyGuardrail):
                    self.key_fields((*loc, "keyFields"), g.key_fields, variables["args"])
        for ei, e in enumerate(self.policy.escalations):
            variables = {"args": self.args_of(e.tool), "facts": self.facts, "state": _STATE,
                         "result": _NO_RESULT if e.phase == "before" else _RESULT}
            self.condition(("escalations", ei, "when"), e.when, variables)
            self.template(("escalations", ei, "description"), e.description, variables)
            self.template(("escalations", ei, "approvedMessage"), e.approved_message,
                          {**variables, "state": _STATE_DECIDED})
        guards = self.policy.guards
        for section, layers in (("input", guards.input), ("output", guards.output),
                                ("tool_result", guards.tool_result)):
            for li, layer in enumerate(layers):
                self.layer(("guards", section, li), layer)
        writes = {name: bool(spec.write) for name, spec in self.specs.items() if hasattr(spec, "write")}
        if writes:
            try:
                check_policy_for_tools(self.policy, writes)
            except ValueError as exc:
                late = "escalations" if "review write tools after" in str(exc) else "tools"
                raise self.fail((late,), str(exc)) from None

    def key_fields(self, loc: Sequence[int | str], fields: Sequence[str], args: Shape) -> None:
        if args.kind != "object":
            return
        for fi, key in enumerate(fields):
            if key not in args.fields:
                raise self.fail((*loc, fi), f"key field {key!r} is not an argument of the tool; "
                                f"arguments: {', '.join(sorted(args.fields))}")

    def layer(self, loc: tuple[int | str, ...], layer: LayerConfig) -> None:
        from nodes.guards.base import GuardParamsError, UnknownGuardError, check_guard_params

        params, malformed = _params_to_check(layer.params)
        if malformed is not None:
            raise self.fail((*loc, "params", malformed), f"parameter {malformed!r}: not an environment reference; "
                            "use ${NAME} or ${NAME:-default} (NAME in capitals)")
        try:
            check_guard_params(layer.layer, params)
        except UnknownGuardError as exc:
            raise self.fail(loc, str(exc.args[0])) from None
        except GuardParamsError as exc:
            at = (*loc, "params", exc.param) if exc.param in layer.params else loc
            raise self.fail(at, str(exc)) from None


#: A layer parameter taken from the environment at start-up: ``${NAME}`` or ``${NAME:-default}``.
ENV_REF = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*)(?::-(.*))?\}$")


def expand_env(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Replace ``"${VAR}"`` / ``"${VAR:-default}"`` strings in layer params; empty becomes None."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        match = ENV_REF.match(value)
        if not match:
            return value
        resolved = env.get(match[1], match[2] or "")
        return resolved or None
    if isinstance(value, Mapping):
        return {k: expand_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env) for v in value]
    return value


def _params_to_check(params: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Return the params whose value is known at load (a reference's default stands for it), or a bad key.

    A reference without a default is resolved at start-up only, so its type is checked there.
    Something that looks like a reference but is not one would reach the layer as a literal
    string: that key is returned as malformed.
    """
    known: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, str) and value.lstrip().startswith("${"):
            match = ENV_REF.match(value)
            if match is None:
                return known, key
            if match[2]:
                known[key] = match[2]
            continue
        known[key] = value
    return known, None


def _facts_shape(facts: Mapping[str, Any] | None) -> Shape:
    if facts is None:
        return DYN
    from graph.state import INPUT_RISK_KEY, input_risk_fact

    # The engine adds the input guard's risk to every call's facts (nodes/tool_guard.py).
    return _shape_of_value({**facts, INPUT_RISK_KEY: input_risk_fact(None)}, "facts")


def check_policy_for_tools(policy: Policy, writes: Mapping[str, bool]) -> None:
    """Refuse a policy that leaves a write tool unguarded or reviews a write after it ran.

    Args:
        policy: The loaded policy.
        writes: Tool name to "is a write tool".

    Raises:
        ValueError: Naming the tools or escalations at fault.
    """
    unguarded = sorted(name for name, write in writes.items() if write and not policy.tools.get(name))
    if unguarded:
        raise ValueError(f"policy {policy.name!r} leaves write tools unguarded: {', '.join(unguarded)}")
    # A review after a write comes too late (the money already moved) and an edit would write twice.
    late = [e.id for e in policy.escalations if e.phase == "after" and (e.tool == "*" or writes.get(e.tool))]
    if late:
        raise ValueError(
            f"policy {policy.name!r}: escalations {', '.join(late)} review write tools after they ran; "
            "use phase: before for write tools (after-phase rules must name a read tool)"
        )
