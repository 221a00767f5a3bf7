"""The Gradio app behind ``airlock demo``: customer chat, reviewer inbox and audit log.

Who is who comes only from Gradio's login (``gr.Request.username``, looked up in the accounts
file); no handler takes a user id from the page. Every handler checks the role it needs on the
server, so hiding a tab is convenience, not the protection. Thread state (messages, guard
decisions, pending confirm gates and reviews) is read from Postgres through
:class:`graph.service.AirlockApp`, so a paused thread is listed and resumable after a restart.
"""

from __future__ import annotations

import os

# Gradio reads this at import time; the app must not call home (no network at run time).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from ui.app.common import MAX_CHOICES  # noqa: E402
from ui.app.layout import AirlockUI  # noqa: E402
from ui.app.process import launch, port_problem, start_sweeper, theme  # noqa: E402
from ui.app.render import (  # noqa: E402
    ChatView,
    decision_rows,
    demo_accounts_note,
    describe_decision,
    example_prompts,
    render_messages,
    thread_label,
)

__all__ = [
    "MAX_CHOICES",
    "AirlockUI",
    "ChatView",
    "decision_rows",
    "describe_decision",
    "demo_accounts_note",
    "example_prompts",
    "port_problem",
    "launch",
    "render_messages",
    "start_sweeper",
    "theme",
    "thread_label",
]
