"""The reviewer inbox: pending cases, one case's details, and deciding it."""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable
from typing import Any, cast

import gradio as gr

from graph.service import (
    StaleReviewError,
)
from ui.app.base import _UIBase
from ui.app.common import (
    INBOX_PAGE,
    INBOX_POLL_S,
    _refused,
)
from ui.app.render import (
    _fmt_time,
    _md_text,
    _pretty,
    decision_rows,
)

__all__ = ["InboxTab"]

log = logging.getLogger(__name__)


class InboxTab(_UIBase):
    """The inbox tab's handlers and layout."""

    def on_inbox(self, selected: str | None, signature: str | None, request: gr.Request,
                 *, pick_first: bool = False, at: list[str | None] | None = None,
                 page_size: int = INBOX_PAGE) -> tuple[Any, ...]:
        """List one page of the pending cases for the reviewer's roles (most urgent first).

        ``at`` holds the cursor each page so far started at (the last is this page's; None or
        empty: the first page). The summary says the true number of pending cases and which
        of them the page shows. A page that emptied (its cases decided) falls back to the
        first page. The first case is selected only on page load or an explicit refresh
        (``pick_first``): after a decision nothing is preselected, so the reviewer reads the
        outcome and picks the next case on purpose.
        """
        account = self.reviewer(request, what="inbox")
        at = list(at or [None])
        roles = list(account.roles)
        with self._errors():
            page = self.app.review_page(roles=roles, limit=page_size, cursor=at[-1])
            if not page.items and len(at) > 1:
                at = [None]
                page = self.app.review_page(roles=roles, limit=page_size)
        rows = page.items
        table = [[_fmt_time(r.get("due_at")), str(r.get("assignee", "")), str(r.get("tool", "")),
                  str(r.get("user_id") or ""), _fmt_time(r.get("created_at")), str(r["review_id"])]
                 for r in rows]
        choices = [(f"due {_fmt_time(r.get('due_at'))} · {r.get('assignee')} · {r.get('tool')} · "
                    f"{r.get('user_id') or '?'}", str(r["review_id"])) for r in rows]
        ids = [c[1] for c in choices]
        value = selected if selected in ids else (ids[0] if ids and pick_first else None)
        pager = {"at": at, "next": page.next}
        new_signature = json.dumps([ids, value, page.total, page.start, page.next])
        if new_signature == signature:
            return gr.skip(), gr.skip(), gr.skip(), signature, gr.skip(), gr.skip(), gr.skip()
        shown = (f" · showing {page.start + 1:,}–{page.start + len(rows):,} of {page.total:,}"
                 if rows and (page.next or len(at) > 1) else "")
        return (
            gr.Dataframe(value=table or [["", "", "", "", "", ""]]),
            gr.Dropdown(choices=choices, value=value),
            gr.Markdown(value=f"**{page.total:,} pending case(s)** for roles {', '.join(account.roles)}{shown}"),
            new_signature,
            pager,
            gr.Button(interactive=len(at) > 1),
            gr.Button(interactive=page.next is not None),
        )

    def on_inbox_page(self, selected: str | None, pager: dict[str, Any] | None, direction: str,
                      request: gr.Request, *, page_size: int = INBOX_PAGE) -> tuple[Any, ...]:
        """Show the next or the previous page of the inbox (``direction``: ``next`` or ``prev``)."""
        at = list((pager or {}).get("at") or [None])
        following = (pager or {}).get("next")
        if direction == "next" and following:
            at.append(str(following))
        elif direction == "prev" and len(at) > 1:
            at.pop()
        return self.on_inbox(selected, None, request, at=at, page_size=page_size)

    def on_case(self, review_id: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Show one case: details, the masked conversation and the masked arguments."""
        account = self.reviewer(request, what="case")
        if not review_id:
            return (gr.Markdown(value="No case selected: pick one from the list."), gr.Chatbot(value=[]),
                    gr.JSON(value=None), gr.Code(value="", visible=False), gr.Button(visible=False),
                    gr.Button(visible=False), gr.Button(visible=False),
                    gr.Dataframe(value=[["", "", "", ""]]))
        with self._errors():
            row = self.app.get_review(review_id, roles=list(account.roles))
        payload = row.get("payload") or {}
        requests = list(payload.get("action_requests") or [])
        configs = list(payload.get("review_configs") or [])
        allowed = set(configs[0].get("allowed_decisions", [])) if configs else {"approve", "reject"}
        first = requests[0] if requests else {}
        redact = self.app.services.redact
        details = "\n".join([
            f"### Case `{html.escape(str(row['review_id']))}` · {html.escape(str(row.get('status', '')))}",
            f"- **tool:** `{html.escape(str(row.get('tool', '')))}`: "
            + _md_text(self._describer()(str(row.get("tool", "")), redact(first.get("args") or {}))),
            f"- **customer:** {_md_text(str(row.get('user_id') or '?'))}",
            f"- **assignee:** {html.escape(str(row.get('assignee', '')))}",
            f"- **created:** {_fmt_time(row.get('created_at'))} · **due:** {_fmt_time(row.get('due_at'))}",
            f"- **allowed decisions:** {html.escape(', '.join(sorted(allowed)))}",
            f"- **if nobody decides:** {html.escape(str(row.get('timeout_action', '')))}",
            "",
            _md_text(str(redact(first.get("description") or ""))),
        ])
        conversation = []
        for m in row.get("messages") or []:
            role = {"human": "user"}.get(str(m.get("role")), "assistant")
            # The Chatbot renders HTML even without Markdown: escaped, a customer's tags are text.
            content = html.escape(str(redact(str(m.get("content") or ""))), quote=False)
            meta = None
            if m.get("role") == "tool":
                meta = {"title": "Tool result", "status": "done"}
                content = _pretty(content, 800)
            elif m.get("tool_calls"):
                content = (content + "\n\n" if content else "") + "Calls: " + ", ".join(
                    html.escape(str(c), quote=False) for c in m["tool_calls"])
            if not content.strip():
                continue
            conversation.append({"role": role, "content": content, **({"metadata": meta} if meta else {})})
        args = redact(first.get("args") or {})
        return (
            gr.Markdown(value=details),
            gr.Chatbot(value=cast(Any, conversation)),
            gr.JSON(value=args),
            gr.Code(value=json.dumps(args, indent=2, ensure_ascii=False), visible="edit" in allowed),
            gr.Button(visible="approve" in allowed),
            gr.Button(visible="edit" in allowed),
            gr.Button(visible="reject" in allowed),
            gr.Dataframe(value=decision_rows(self.app.decisions(row["thread_id"])) or [["", "", "", ""]]),
        )

    def decide_review(self, review_id: str, action: str, args_json: str = "", comment: str = "",
                      request: gr.Request | None = None) -> str:
        """Approve, edit or reject a pending case (reviewers only; the HTTP API ends here too)."""
        account = self.reviewer(request, what=f"decide_review:{action}")
        if action not in ("approve", "edit", "reject"):
            raise _refused("action must be approve, edit or reject")
        if not review_id:
            raise _refused("Select a case first.")
        args: dict[str, Any] | None = None
        if action == "edit":
            try:
                parsed = json.loads(args_json or "")
            except ValueError as exc:
                raise _refused(f"The edited arguments are not valid JSON: {exc}") from None
            if not isinstance(parsed, dict):
                raise _refused("The edited arguments must be a JSON object.")
            args = parsed
        with self._errors():
            try:
                result = self.app.decide_review(
                    review_id=review_id, reviewer=account.username, roles=list(account.roles),
                    action=action, message=(comment or "")[:2000], args=args,
                )
            except StaleReviewError as exc:
                return self._already_decided(review_id, exc)
        reply = result.reply
        done = {"approve": "Approved", "edit": "Edited and approved", "reject": "Rejected"}[action]
        said = f" The customer was told: “{_md_text(reply[:300])}”" if reply else ""
        return f"**{done}** case `{html.escape(review_id)}`.{said} Pick the next case from the list."

    def _already_decided(self, review_id: str, exc: StaleReviewError) -> str:
        """Say, as a notice and not an error, that another reviewer (or the clock) got there first."""
        log.warning("refused: %s", exc)
        store = self.app.services.reviews
        row = store.get(review_id) if store is not None else None
        if row is None:
            return "This case no longer exists; the list is refreshed. Pick the next case from the list."
        status, who = str(row.get("status") or ""), str(row.get("reviewer") or "")
        if status in ("approved", "edited", "rejected"):
            what = f"was already {status}" + (f" by {html.escape(who)}" if who else "")
        else:
            what = f"is no longer pending ({html.escape(status)})"
        return (f"Case `{html.escape(review_id)}` {what}; the list is refreshed. "
                "Pick the next case from the list.")

    def _build_inbox(self) -> tuple[Callable[..., tuple[Any, ...]], list[Any], gr.Timer]:
        """Lay out the inbox; return its page-load filler, the filler's outputs and the poll timer."""
        gr.Markdown("Cases escalated to a human, most urgent first. Arguments and conversation are "
                    "shown with personal data masked.")
        summary = gr.Markdown(elem_id="inbox-summary")
        table = gr.Dataframe(headers=["due", "assignee", "tool", "customer", "created", "review id"],
                             value=[["", "", "", "", "", ""]], interactive=False, elem_id="inbox-table")
        with gr.Row():
            previous = gr.Button("← Previous page", scale=1, elem_id="inbox-prev", interactive=False)
            following = gr.Button("Next page →", scale=1, elem_id="inbox-next", interactive=False)
        with gr.Row():
            case = gr.Dropdown(label="Case", choices=[], value=None, scale=4, elem_id="case-select",
                               interactive=True)
            refresh = gr.Button("Refresh", scale=1, elem_id="inbox-refresh")
        with gr.Row():
            with gr.Column(scale=3):
                details = gr.Markdown(elem_id="case-details")
                # Plain text: the customer wrote it, and a reviewer must not get clickable links.
                gr.Markdown("**Conversation** (personal data masked)")
                conversation = gr.Chatbot(label="Conversation (masked)", show_label=False, height=360,
                                          elem_id="case-chat",
                                          feedback_options=None, buttons=["copy"], render_markdown=False)
            with gr.Column(scale=2):
                masked = gr.JSON(label="Requested action: arguments (masked)", elem_id="case-args", open=True)
                edit_args = gr.Code(label="Edited arguments (JSON, for Edit)", language="json",
                                    interactive=True, elem_id="case-edit-args", visible=False)
                comment = gr.Textbox(label="Comment to the agent / customer", lines=2,
                                     elem_id="case-comment")
                with gr.Row():
                    approve = gr.Button("Approve", variant="primary", elem_id="approve-btn", visible=False)
                    edit = gr.Button("Edit", elem_id="edit-btn", visible=False)
                    reject = gr.Button("Reject", variant="stop", elem_id="reject-btn", visible=False)
                result = gr.Markdown(elem_id="decide-result")
        with gr.Accordion("Guard decisions on this conversation (newest first)", open=False):
            case_decisions = gr.Dataframe(headers=["where", "layer", "action", "reason"],
                                          value=[["", "", "", ""]], interactive=False, wrap=True,
                                          elem_id="case-decisions")
        signature = gr.State("")
        pager = gr.State({"at": [None], "next": None})
        timer = gr.Timer(INBOX_POLL_S, active=False)
        private: dict[str, Any] = {"api_visibility": "private"}
        inbox_outputs = [table, case, summary, signature, pager, previous, following]
        case_outputs = [details, conversation, masked, edit_args, approve, edit, reject, case_decisions]

        def reload(selected: str | None, pages: dict[str, Any] | None, request: gr.Request) -> tuple[Any, ...]:
            return self.on_inbox(selected, None, request, at=(pages or {}).get("at"))

        def poll(selected: str | None, shown: str | None, pages: dict[str, Any] | None,
                 request: gr.Request) -> tuple[Any, ...]:
            return self.on_inbox(selected, shown, request, at=(pages or {}).get("at"))

        def refresh_inbox(selected: str | None, pages: dict[str, Any] | None, request: gr.Request) -> tuple[Any, ...]:
            return self.on_inbox(selected, None, request, pick_first=True, at=(pages or {}).get("at"))

        def turn(direction: str) -> Callable[..., tuple[Any, ...]]:
            def handler(selected: str | None, pages: dict[str, Any] | None, request: gr.Request) -> tuple[Any, ...]:
                return self.on_inbox_page(selected, pages, direction, request)

            return handler

        timer.tick(poll, [case, signature, pager], inbox_outputs, show_progress="hidden", **private)
        refresh.click(refresh_inbox, [case, pager], inbox_outputs, **private)
        previous.click(turn("prev"), [case, pager], inbox_outputs, **private)
        following.click(turn("next"), [case, pager], inbox_outputs, **private)
        def show_case(selected: str | None, request: gr.Request) -> tuple[Any, ...]:
            return (*self.on_case(selected, request), "")

        # A comment belongs to one case: another case (or none) starts with an empty box, in the
        # same update that shows it (a later clear could wipe what the reviewer began to type).
        case.change(show_case, [case], [*case_outputs, comment], **private)
        for button, action in ((approve, "approve"), (edit, "edit"), (reject, "reject")):
            decided = button.click(
                _bind_action(self.decide_review, action), [case, edit_args, comment], [result], **private,
            )
            decided.success(lambda: (None, ""), None, [case, comment], **private)
            decided.then(reload, [case, pager], inbox_outputs, **private)
        # The one addressable endpoint: POST /gradio_api/call/decide_review (reviewers only).
        gr.api(self.decide_review, api_name="decide_review")

        def fill(request: gr.Request) -> tuple[Any, ...]:
            account = self.accounts.get(getattr(request, "username", None))
            if account is None or not account.is_reviewer:
                return tuple(gr.skip() for _ in inbox_outputs)
            return self.on_inbox(None, None, request, pick_first=True)

        return fill, inbox_outputs, timer


def _bind_action(decide: Callable[..., str], action: str) -> Callable[..., str]:
    def handler(review_id: str, args_json: str, comment: str, request: gr.Request) -> str:
        return decide(review_id, action, args_json, comment, request)

    return handler
