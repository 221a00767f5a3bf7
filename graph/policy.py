"""Policy files: YAML validated with pydantic, conditions compiled as CEL at load time.

A policy configures, per tool, the guardrail chain (pre-tool, idempotency, confirm,
resilience), the human escalations, and the guard pipeline layers. A policy that does
not validate fails at load with the file, the line, the rule and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from graph.cel import CelError, Condition, template_paths
from graph.errors import AirlockError

__all__ = [
    "ConfirmGuardrail",
    "check_policy_for_tools",
    "Escalation",
    "GuardsConfig",
    "IdempotencyGuardrail",
    "LayerConfig",
    "Policy",
    "PolicyError",
    "PreToolCheck",
    "PreToolGuardrail",
    "ResilienceGuardrail",
    "load_policy",
    "parse_duration",
]

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


def _compile(expr: str) -> str:
    try:
        Condition.compile(expr)
    except CelError as exc:
        raise ValueError(f"CEL does not compile: {exc}") from None
    return expr


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

    _v_when = field_validator("when")(classmethod(lambda cls, v: _compile(v)))
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

    _v_threshold = field_validator("threshold")(classmethod(lambda cls, v: _compile(v)))
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
    allowed_decisions: list[Literal["approve", "edit", "reject"]] = Field(
        default_factory=lambda: ["approve", "edit", "reject"],  # type: ignore[arg-type]
        alias="allowedDecisions",
    )

    _v_when = field_validator("when")(classmethod(lambda cls, v: _compile(v)))
    _v_timeout = field_validator("timeout", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )
    _v_desc = field_validator("description")(classmethod(lambda cls, v: _check_template(v)))


class LayerConfig(_Strict):
    """One layer of a guard pipeline, as listed in the policy (order matters)."""

    layer: str
    params: dict[str, Any] = Field(default_factory=dict)
    fail_open: bool = False
    only_if_escalated: bool = False


class GuardsConfig(_Strict):
    """Guard pipelines for user input, model output and tool results."""

    input: list[LayerConfig] = Field(default_factory=lambda: [LayerConfig(layer="prefilter")])
    output: list[LayerConfig] = Field(default_factory=list)
    tool_result: list[LayerConfig] = Field(default_factory=list)
    #: What an uncertain message (the input pipeline's ESCALATE) becomes: ``block``, ``allow``,
    #: ``review`` (a human decides before the agent answers) or ``proceed`` (the agent answers
    #: at once; the message's risk is ``facts.input_risk`` for the tool rules, which must use it).
    uncertain_action: Literal["block", "allow", "review", "proceed"] = "block"
    refusal_message: str = (
        "Sorry, I can't help with that request. I can help with bookings, changes, "
        "cancellations, baggage and refunds."
    )


class Policy(_Strict):
    """A validated policy."""

    version: Literal[1]
    name: str = "policy"
    tools: dict[str, list[ToolGuardrail]] = Field(default_factory=dict)
    escalations: list[Escalation] = Field(default_factory=list)
    guards: GuardsConfig = Field(default_factory=GuardsConfig)

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
        conditions = [e.when for e in self.escalations]
        for chain in self.tools.values():
            for guardrail in chain:
                if isinstance(guardrail, PreToolGuardrail):
                    conditions.extend(c.when for c in guardrail.checks)
        return any("facts.input_risk" in when for when in conditions)

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


def load_policy(path: str | Path, *, known_tools: Iterable[str] | None = None) -> Policy:
    """Load and validate a policy file.

    Args:
        path: The YAML file.
        known_tools: Tool names that exist; a policy naming any other tool is refused.

    Raises:
        PolicyError: With the file, line, rule and reason.
    """
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except OSError as exc:
        raise PolicyError(str(p), None, "", f"cannot read file: {exc.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise PolicyError(str(p), line, "", f"YAML syntax error: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise PolicyError(str(p), 1, "", "the top level must be a mapping with 'version: 1'")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        node = _node_at(root, loc)
        line = node.start_mark.line + 1 if node is not None else None
        msg = err["msg"].removeprefix("Value error, ")
        raise PolicyError(str(p), line, _describe(loc, root), msg) from None
    for name, chain in policy.tools.items():
        problem = _order_problem(name, [g.type for g in chain])
        if problem:
            node = _node_at(root, ("tools", name))
            raise PolicyError(str(p), node.start_mark.line + 1 if node else None, f"tools.{name}", problem)
    if known_tools is not None:
        known = set(known_tools)
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
    return policy


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
