"""What the app shows people: plain call summaries, the compact guard panel, the stylesheet.

Customers read what a call does in the domain's words (``Domain.describe_call``) and one
line per turn about the guards; staff (reviewers) keep the raw calls and the full decision
table. Nothing here knows a domain: summaries come from the describer the app passes in.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import AnyMessage, HumanMessage

__all__ = [
    "CSS",
    "Describer",
    "FEEDBACK_LABEL",
    "call_outcome",
    "call_summary",
    "split_turns",
    "turn_summary",
]

# Describe a call (tool, shown arguments) in plain words; the domain's describe_call.
Describer = Callable[[str, Mapping[str, Any]], str]

FEEDBACK_LABEL = "Feedback comment (opens when you rate an answer with the thumbs; optional)"

# Text markers only: emoji render as empty boxes on machines without an emoji font.
CSS = """
#review-notice { border-left: 4px solid #d97706; padding: 8px 12px; background: #fffbeb; }
#chat-notice { border-left: 4px solid #2563eb; padding: 8px 12px; background: #eff6ff; }
#confirm-box, #question-box { border: 2px solid #2563eb; border-radius: 8px; padding: 8px; }
#model-label { opacity: 0.8; font-size: 0.9em; }
/* The selected thread's label must not run under the dropdown's arrow. */
#thread-select input, #case-select input { padding-right: 2.5em !important; text-overflow: ellipsis; }
#thread-select .wrap-inner, #case-select .wrap-inner { padding-right: 2em; }
/* Long JSON and ids wrap inside their cell instead of running off the page. */
#audit-table td, #case-decisions td { white-space: pre-wrap; overflow-wrap: anywhere; word-break: break-word; }
#audit-table table, #case-decisions table { table-layout: fixed; width: 100%; }
#decision-summary li { margin-bottom: 4px; }
#decisions td { overflow-wrap: break-word; word-break: normal; hyphens: auto; }
"""

_MD_SPECIAL = re.compile("([" + re.escape(string.punctuation) + "])")
_VERBS = {"block": "blocked", "modify": "changed", "escalate": "escalated", "deny": "refused"}
_DONE = {"ok": "done", "error": "failed", "captured": "paid", "refunded": "refunded", "issued": "issued"}


def _md(text: str) -> str:
    """Escape text so Markdown shows it literally (no links, HTML or emphasis)."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def call_summary(describe: Describer | None, tool: str, args: Any) -> str:
    """Return what a customer reads for a call: the domain's sentence, else a neutral one."""
    if describe is not None and isinstance(args, Mapping):
        try:
            text = describe(tool, args).strip()
        except Exception:  # a describer bug must not hide the conversation
            text = ""
        if text:
            return text
    return "An action on your account"


def split_turns(decisions: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Split a thread's decisions into turns: each starts with a customer message's input checks.

    The pipeline runs each input layer once per message, so a turn starts at an input
    decision that follows a non-input one or repeats a layer; decisions before the first
    input check (e.g. a resumed gate) belong to the first turn.
    """
    turns: list[list[Mapping[str, Any]]] = []
    layers: set[Any] = set()
    previous_input = False
    for d in decisions:
        is_input = d.get("stage") == "input"
        if is_input and (not previous_input or d.get("layer") in layers):
            turns.append([])
            layers = set()
        if not turns:
            turns.append([])
        turns[-1].append(d)
        if is_input:
            layers.add(d.get("layer"))
        previous_input = is_input
    return turns


def _reason(d: Mapping[str, Any]) -> str:
    return str(d.get("message") or d.get("reason") or d.get("rule") or "").strip()


def call_outcome(calls: Sequence[Mapping[str, Any]]) -> str:
    """Say how one call ended (from its decisions, in the order its guardrails ran)."""
    words: list[str] = []
    for d in calls:
        action = str(d.get("action") or "")
        guardrail = d.get("guardrail")
        if guardrail == "pre-tool" and action == "deny":
            words.append("refused" + (f" ({_reason(d)})" if _reason(d) else ""))
        elif guardrail == "pre-tool" and action == "escalate":
            words.append("sent to a human reviewer")
        elif guardrail == "confirm":
            words.append({"confirmed": "you confirmed", "declined": "you cancelled"}.get(action, action))
        elif guardrail == "hitl":
            words.append({"approve": "a reviewer approved", "reject": "a reviewer rejected",
                          "edit": "a reviewer changed it"}.get(action, f"reviewer: {action}"))
        elif guardrail is None and d.get("stage") is None and action not in ("allow", ""):
            words.append(_DONE.get(action, action))
    return ", ".join(words) or "checked"


def turn_summary(
    messages: Sequence[AnyMessage],
    decisions: Sequence[Mapping[str, Any]],
    describe: Describer | None = None,
) -> str:
    """Return the customer's guard panel: one Markdown line per turn, newest first.

    Each line names the customer's message, whether the input checks passed (or what they
    did), each call in plain words with how it ended, and whether the answer was adjusted.
    """
    asked = [m for m in messages if isinstance(m, HumanMessage) and m.additional_kwargs.get("airlock_guard")]
    calls: dict[str, tuple[str, Any]] = {}
    for m in messages:
        for c in getattr(m, "tool_calls", None) or []:
            calls[str(c.get("id") or "")] = (str(c.get("name") or ""), c.get("args") or {})
    lines: list[str] = []
    for number, turn in enumerate(split_turns(decisions), start=1):
        inputs = [d for d in turn if d.get("stage") == "input"]
        flagged = [d for d in inputs if d.get("action") not in ("allow", None)]
        parts: list[str] = []
        if flagged:
            parts.append("; ".join(f"{_md(_VERBS.get(str(d.get('action')), str(d.get('action'))))} by "
                                   f"{_md(str(d.get('layer')))}"
                                   + (f": {_md(_reason(d))}" if _reason(d) else "") for d in flagged))
        elif inputs:
            parts.append("message checked")
        by_call: dict[str, list[Mapping[str, Any]]] = {}
        for d in turn:
            if d.get("tool_call_id") and d.get("stage") is None:
                by_call.setdefault(str(d["tool_call_id"]), []).append(d)
        for call_id, ds in by_call.items():
            name, args = calls.get(call_id, (str(ds[0].get("tool") or ""), {}))
            parts.append(f"{_md(call_summary(describe, name, args))}: {_md(call_outcome(ds))}")
        results = [d for d in turn if d.get("stage") == "tool_result" and d.get("action") == "block"]
        if results:
            parts.append("a tool result was withheld")
        output = [d for d in turn if d.get("stage") == "output" and d.get("action") not in ("allow", None)]
        if output:
            parts.append("answer adjusted (" + _md(", ".join(str(d.get("layer")) for d in output)) + ")")
        text = asked[number - 1].text if number - 1 < len(asked) else ""
        text = " ".join(text.split())
        quote = f" “{_md(text[:40] + ('…' if len(text) > 40 else ''))}”" if text else ""
        lines.append(f"- **Turn {number}**{quote}: " + " · ".join(parts or ["no checks"]))
    lines.reverse()
    return "\n".join(lines) if lines else "_No guard decisions yet._"
