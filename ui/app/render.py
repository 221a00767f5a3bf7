"""What the pages show, as pure functions (unit-testable): messages, decisions, threads, prompts."""

from __future__ import annotations

import html
import json
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage

from graph.domain import DomainPlugin
from graph.service import (
    PendingInterrupt,
)
from ui.app.common import (
    _VERBS,
    MAX_CHOICES,
)
from ui.auth import (
    CUSTOMER_ROLE,
    REVIEWER_ROLE,
    Accounts,
)
from ui.look import Describer, call_outcome, call_summary

__all__ = [
    "ChatView",
    "decision_rows",
    "demo_accounts_note",
    "describe_decision",
    "example_prompts",
    "render_messages",
    "thread_label",
]


def example_prompts(customer_id: str | None, *, plugin: DomainPlugin | None = None) -> tuple[str, ...]:
    """Return the example prompts for a customer: their own first, then the general ones.

    The list lives with the served domain (``DomainPlugin.demo_prompts``, e.g.
    ``tools/airline/examples.py``), where the README and the tests read it too.

    Args:
        customer_id: The signed-in customer (None: the prompts for any customer).
        plugin: The domain served (default: the configured one, ``graph.plugins``).
    """
    from graph.plugins import load_plugin

    return (plugin or load_plugin()).demo_prompts(customer_id)


def demo_accounts_note(accounts: Accounts) -> str:
    """Return the sign-in page's list of the demo accounts (empty for an accounts file of your own).

    The names come from the served domain's demo file; its passwords are the published demo
    convention (``demo`` for customers, ``review`` for reviewers).
    """
    if not accounts.is_demo:
        return ""
    names = list(accounts.accounts.values())
    customers = [a.username for a in names if CUSTOMER_ROLE in a.roles]
    reviewers = [a.username for a in names if REVIEWER_ROLE in a.roles and CUSTOMER_ROLE not in a.roles]

    def codes(items: list[str]) -> str:
        return ", ".join(f"<code>{html.escape(n)}</code>" for n in items)

    parts = []
    if customers:
        parts.append(f"customers {codes(customers)} (password <code>demo</code>)")
    if reviewers:
        parts.append(f"reviewer{'s' if len(reviewers) > 1 else ''} {codes(reviewers)} (password <code>review</code>)")
    return f"<p>Demo accounts: {'; '.join(parts)}.</p>" if parts else ""


def describe_decision(decision: Mapping[str, Any]) -> str:
    """Return one line for a guard or guardrail decision, e.g. ``blocked by prefilter: ...``."""
    action = str(decision.get("action", ""))
    verb = _VERBS.get(action, action)
    who = decision.get("layer") or decision.get("guardrail") or ("tool" if decision.get("tool") else "")
    reason = decision.get("reason") or decision.get("message") or decision.get("rule") or ""
    text = f"{verb} by {who}" if who else verb
    return f"{text}: {reason}" if reason else text


def decision_rows(decisions: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Return the side-panel rows (newest first): where, layer, action, reason."""
    rows: list[list[str]] = []
    for d in decisions:
        where = str(d.get("tool") or d.get("stage") or "")
        if d.get("stage") == "tool_result" and d.get("tool"):
            where = f"{d['tool']} (result)"
        layer = str(d.get("layer") or d.get("guardrail") or ("tool" if d.get("tool") else ""))
        reason = str(d.get("reason") or d.get("message") or d.get("rule") or "")
        rows.append([where, layer, str(d.get("action", "")), reason])
    rows.reverse()
    return rows


def _input_groups(decisions: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Split the input-stage decisions into one group per guarded customer message.

    The pipeline runs each layer once per message, so a new group starts after a non-input
    decision or when a layer repeats.
    """
    groups: list[list[Mapping[str, Any]]] = []
    previous_input = False
    for d in decisions:
        if d.get("stage") != "input":
            previous_input = False
            continue
        layers = {g.get("layer") for g in groups[-1]} if groups and previous_input else set()
        if not previous_input or d.get("layer") in layers:
            groups.append([])
        groups[-1].append(d)
        previous_input = True
    return groups


def _text(message: AnyMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)


def _pretty(text: str, limit: int = 1500) -> str:
    try:
        body = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, TypeError):
        body = text
    if len(body) > limit:
        body = body[:limit] + "\n…"
    return body


def render_messages(
    messages: Sequence[AnyMessage],
    decisions: Sequence[Mapping[str, Any]] = (),
    *,
    pending: Sequence[PendingInterrupt] = (),
    describe: Describer | None = None,
    staff: bool = False,
) -> tuple[list[dict[str, Any]], list[str | None]]:
    """Turn a thread into ``gr.Chatbot`` messages, with guard decisions inline.

    Each tool call becomes a collapsed box titled with what it does in plain words (the
    domain's ``describe_call``) and the guardrail decisions for that call; staff also see the
    tool name, its raw arguments and the result. A customer message that a guard blocked or
    modified gets a note.

    Args:
        messages: The thread's messages (as stored: PII already masked).
        decisions: The thread's guard decisions, in order.
        pending: The thread's pending interrupts (a call waiting at a gate is marked).
        describe: The domain's call describer (customers never see tool names or raw JSON).
        staff: Whether the reader is staff (a reviewer): show the raw calls too.

    Returns:
        The chat messages and, per chat message, the id of the message it came from (for
        feedback).
    """
    results = {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}
    by_call: dict[str, list[Mapping[str, Any]]] = {}
    for d in decisions:
        if d.get("tool_call_id"):
            by_call.setdefault(str(d["tool_call_id"]), []).append(d)
    waiting = {str(p.value.get("tool_call_id")): p.kind for p in pending if p.value.get("tool_call_id")}
    groups = iter(_input_groups(decisions))
    chat: list[dict[str, Any]] = []
    ids: list[str | None] = []
    for message in messages:
        if isinstance(message, HumanMessage):
            chat.append({"role": "user", "content": html.escape(_text(message), quote=False)})
            ids.append(message.id)
            guard = message.additional_kwargs.get("airlock_guard")
            group = next(groups, []) if guard else []
            notes = [describe_decision(d) for d in group if d.get("action") != "allow"]
            if guard and guard != "allow" and notes:
                label = "Blocked" if guard == "block" else "Note"
                chat.append({
                    "role": "assistant", "content": "\n".join(f"- {n}" for n in notes),
                    "metadata": {"title": f"{label} · input guard: {notes[0]}", "status": "done"},
                })
                ids.append(message.id)
        elif isinstance(message, AIMessage):
            for call in message.tool_calls:
                call_id = str(call.get("id") or "")
                summary = call_summary(describe, str(call["name"]), call.get("args") or {})
                lines = [_md_text(summary)]
                if staff:
                    lines.append(f"**call** `{call['name']}`\n```json\n"
                                 f"{_pretty(json.dumps(call.get('args', {})))}\n```")
                    notes = [describe_decision(d) for d in by_call.get(call_id, [])]
                    if notes:
                        lines.append("**guardrails**\n" + "\n".join(f"- {n}" for n in notes))
                elif by_call.get(call_id):
                    lines.append(f"Outcome: {_md_text(call_outcome(by_call[call_id]))}")
                result = results.get(call_id)
                title = summary if len(summary) <= 90 else summary[:89] + "…"
                status = "done"
                if result is not None and staff:
                    lines.append(f"**result**\n```json\n{_pretty(_text(result))}\n```")
                elif waiting.get(call_id) == "confirm":
                    title += " · waiting for your confirmation"
                    status = "pending"
                elif waiting.get(call_id) == "question":
                    title += " · waiting for your answer"
                    status = "pending"
                elif waiting.get(call_id) == "review":
                    title += " · waiting for a human reviewer"
                    status = "pending"
                chat.append({"role": "assistant", "content": "\n\n".join(lines),
                             "metadata": {"title": title, "status": status}})
                ids.append(message.id)
            text = _text(message).strip()
            if text:
                chat.append({"role": "assistant", "content": text})
                ids.append(message.id)
        elif isinstance(message, ToolMessage):
            # Shown inside its call's box; a result whose call is not in view stands alone.
            if not any(message.tool_call_id == c.get("id") for m in messages if isinstance(m, AIMessage)
                       for c in m.tool_calls):
                chat.append({"role": "assistant",
                             "content": _pretty(_text(message)) if staff else "Result received.",
                             "metadata": {"title": "Tool result", "status": "done"}})
                ids.append(message.id)
    return chat, ids


def thread_label(row: Mapping[str, Any]) -> str:
    """Return the thread selector's label: a marker for a paused thread, the title, the time."""
    pending = list(row.get("pending") or [])
    marker = ""
    if "confirm" in pending:
        marker = "[awaiting your confirmation] "
    elif "question" in pending:
        marker = "[awaiting your answer] "
    elif "review" in pending:
        marker = "[waiting for a reviewer] "
    title = str(row.get("title") or "").strip() or "New conversation"
    if len(title) > 40:
        title = title[:39] + "…"
    when = row.get("updated_at")
    stamp = f" · {when:%b %d %H:%M}" if isinstance(when, datetime) else ""
    return f"{marker}{title}{stamp}"


# CommonMark lets any ASCII punctuation be backslash-escaped: no links, HTML, emphasis or URLs.
_MD_SPECIAL = re.compile("([" + re.escape(string.punctuation) + "])")


def _md_text(text: str) -> str:
    """Escape text (possibly written by a customer) so Markdown shows it literally."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def _fmt_time(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    return "" if value is None else str(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatView:
    """Everything the chat tab shows for one thread."""

    thread_id: str | None
    chat: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str | None] = field(default_factory=list)
    decisions: list[list[str]] = field(default_factory=list)
    threads: list[tuple[str, str]] = field(default_factory=list)
    confirm: PendingInterrupt | None = None
    review: PendingInterrupt | None = None
    question: PendingInterrupt | None = None
    notice: str = ""
    summary: str = ""
    staff: bool = False
    #: The thread's turn is still under way (e.g. resumed by a reviewer's decision): keep polling.
    running: bool = False

    @property
    def signature(self) -> str:
        """Return what the poller compares to decide whether anything changed."""
        pending = [p.id for p in (self.confirm, self.review, self.question) if p is not None]
        return json.dumps([self.thread_id, len(self.chat), pending, len(self.decisions), self.running])


def _confirm_text(gate: PendingInterrupt, *, staff: bool = False) -> str:
    """Say what the customer is asked to confirm: the action, the amount, the card (not the raw call)."""
    value = gate.value
    amount = value.get("amount_usd")
    direction = str(value.get("direction") or "charge")
    summary = str(value.get("summary") or "").strip()
    lines = ["### Please confirm"]
    if summary:
        lines.append(f"**{_md_text(summary)}**")
    lines.append(_md_text(str(value.get("message") or "Do you confirm?")))
    if amount is not None:
        try:
            if float(amount) > 0:
                lines.append(f"**Amount:** USD {float(amount):,.2f} ({_md_text(direction)})")
        except (TypeError, ValueError):
            lines.append(f"**Amount:** {_md_text(str(amount))}")
    if value.get("notice"):
        lines.append(f"_{_md_text(str(value['notice']))}_")
    if staff:  # reviewers keep the raw call the gate is bound to
        raw = json.dumps({"tool": value.get("tool"), "args": value.get("args")}, indent=2, ensure_ascii=False)
        lines.append(f"Raw call (staff):\n```json\n{raw}\n```")
    return "\n\n".join(lines)


def _question_choices(question: PendingInterrupt | None) -> list[dict[str, Any]]:
    if question is None:
        return []
    return [c for c in question.value.get("choices") or [] if isinstance(c, dict)][:MAX_CHOICES]


def _question_text(question: PendingInterrupt) -> str:
    lines = ["### Please answer", html.escape(str(question.value.get("question") or ""))]
    if question.value.get("notice"):
        lines.append(f"_{html.escape(str(question.value['notice']))}_")
    return "\n\n".join(lines)
