"""The audit tab: the newest events and the hash chain's verification."""

from __future__ import annotations

import html
import json
from typing import Any

import gradio as gr

from ui.app.base import _UIBase
from ui.app.render import (
    _fmt_time,
)

__all__ = ["AuditTab"]


class AuditTab(_UIBase):
    """The audit tab's handler and layout."""

    def on_audit(self, thread_filter: str, limit: float | None, request: gr.Request) -> tuple[Any, ...]:
        """Show the newest audit events and verify the hash chain."""
        self.reviewer(request, what="audit")
        with self._errors():
            audit = self.app.services.audit
            events = audit.events(thread_id=(thread_filter or "").strip() or None,
                                  limit=max(1, min(int(limit or 100), 1000)))
            report = audit.verify()
        rows = [[e.id, _fmt_time(e.ts), e.event_type, e.actor, e.thread_id or "", e.tool or "",
                 json.dumps(e.payload, ensure_ascii=False, default=str)[:400]] for e in events]
        if report.ok:
            status = f"**Audit chain intact**: {report.checked} event(s) verified."
            if report.unanchored:  # deleting these from the end would leave a consistent chain
                status += (f" The last {report.unanchored} (after the newest anchor) cannot be proven "
                           "complete until the next anchor.")
        else:
            where = f" of stream {report.first_bad_stream}" if report.first_bad_stream else ""
            status = (f"**Audit chain BROKEN** at event {report.first_bad_seq or '-'}{where}: "
                      f"{html.escape(report.reason)} ({report.checked} checked).")
        return gr.Dataframe(value=rows or [["", "", "", "", "", "", ""]]), gr.Markdown(value=status)

    def _build_audit(self, tab: gr.Tab) -> None:
        gr.Markdown("The hash-chained audit log (append-only in Postgres). Payloads hold masked data only.")
        status = gr.Markdown(elem_id="audit-status")
        with gr.Row():
            thread_filter = gr.Textbox(label="Thread id (optional)", scale=3)
            limit = gr.Number(label="Events", value=100, minimum=1, maximum=1000, precision=0, scale=1)
            refresh = gr.Button("Refresh and verify", scale=1, elem_id="audit-refresh")
        table = gr.Dataframe(headers=["id", "time", "type", "actor", "thread", "tool", "payload"],
                             value=[["", "", "", "", "", "", ""]], interactive=False, wrap=True,
                             elem_id="audit-table")
        refresh.click(self.on_audit, [thread_filter, limit], [table, status], api_visibility="private")
        tab.select(self.on_audit, [thread_filter, limit], [table, status], api_visibility="private")
