"""Settings and helpers every part of the app shares."""

from __future__ import annotations

import logging

import gradio as gr

__all__ = ["CHAT_POLL_S", "INBOX_PAGE", "INBOX_POLL_S", "MAX_CHOICES", "SWEEP_EVERY_S"]

log = logging.getLogger(__name__)


CHAT_POLL_S = 1.5
MAX_CHOICES = 6  # answer buttons laid out for a question (the shipped domains' longest list has 5)
_CHAT_OUTPUTS = 12 + 3 + MAX_CHOICES + 1  # see AirlockUI._build_chat
INBOX_POLL_S = 3.0
#: Cases per page of the reviewer inbox (the summary gives the true total).
INBOX_PAGE = 50
_STALE_NOTICE = ("This request was already answered, perhaps in another tab or window. "
                 "The conversation below is up to date.")
SWEEP_EVERY_S = 15.0
_VERBS = {
    "block": "blocked", "modify": "modified", "escalate": "escalated", "allow": "allowed",
    "deny": "denied", "ok": "ok", "error": "failed", "confirmed": "confirmed",
    "declined": "declined", "approve": "approved", "reject": "rejected", "edit": "edited",
}


def _refused(message: str) -> gr.Error:
    """Return the page's message for an expected refusal, logged as one line (no traceback)."""
    log.warning("refused: %s", message)
    return gr.Error(message, print_exception=False)
