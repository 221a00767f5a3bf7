"""The whole page: the tabs a signed-in account may use, built into one Blocks."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from ui.app.audit import AuditTab
from ui.app.chat import ChatTab
from ui.app.inbox import InboxTab

__all__ = ["AirlockUI"]


class AirlockUI(ChatTab, InboxTab, AuditTab):
    """Build the Gradio Blocks for one :class:`AirlockApp` and one set of accounts."""

    def on_load(self, request: gr.Request) -> tuple[Any, ...]:
        """Show the tabs the signed-in account may use."""
        account = self.account(request)
        roles = ", ".join(account.roles)
        header = f"Signed in as **{html.escape(account.username)}** ({html.escape(roles)})"
        if account.customer_id:
            header += f" · customer profile `{html.escape(account.customer_id)}`"
        first = "chat" if account.is_customer else ("inbox" if account.is_reviewer else "none")
        return (
            gr.Markdown(value=header),
            gr.Tab(visible=account.is_customer),
            gr.Tab(visible=account.is_reviewer),
            gr.Tab(visible=account.is_reviewer),
            gr.Tab(visible=not (account.is_customer or account.is_reviewer)),
            gr.Tabs(selected=first),
            gr.Timer(active=account.is_reviewer),
        )

    def build(self) -> gr.Blocks:
        """Build the Blocks (call ``.queue().launch(auth=self.login, ...)`` on the result)."""
        with gr.Blocks(title="airlock") as blocks:
            with gr.Row():
                gr.Markdown("## airlock · guarded assistant")
                header = gr.Markdown(elem_id="signed-in")
                gr.Button("Sign out", link="/logout", size="sm", scale=0, elem_id="logout")
            with gr.Tabs(selected="chat") as tabs:
                with gr.Tab("Chat", id="chat", visible=False, elem_id="tab-chat") as chat_tab:
                    fill_chat, chat_outputs = self._build_chat()
                with gr.Tab("Reviewer inbox", id="inbox", visible=False, elem_id="tab-inbox") as inbox_tab:
                    fill_inbox, inbox_outputs, inbox_timer = self._build_inbox()
                with gr.Tab("Audit", id="audit", visible=False, elem_id="tab-audit") as audit_tab:
                    self._build_audit(audit_tab)
                with gr.Tab("No access", id="none", visible=False) as none_tab:
                    gr.Markdown("This account has neither the customer nor the reviewer role.")
            blocks.load(
                self.on_load, None,
                [header, chat_tab, inbox_tab, audit_tab, none_tab, tabs, inbox_timer],
                api_visibility="private",
            ).then(fill_chat, None, chat_outputs, api_visibility="private").then(
                fill_inbox, None, inbox_outputs, api_visibility="private")
        return blocks
