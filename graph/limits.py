"""Size limits every entry point to the graph enforces (the app's service, the graph itself).

HTTP bodies are limited before they are parsed (the web layer); these limits hold for
whatever reaches the graph, including runs posted through LangGraph's API, where the input
guard refuses an oversized message and the checkpointer never stores its text.
"""

from __future__ import annotations

__all__ = ["MAX_MESSAGE_CHARS", "MAX_REVIEW_MESSAGE_CHARS", "too_long"]

#: The longest customer message, in characters. The policy's input guards (e.g. the
#: prefilter's length rule) may apply a stricter limit of their own.
MAX_MESSAGE_CHARS = 100_000
#: The longest comment a reviewer (or a feedback form) may attach.
MAX_REVIEW_MESSAGE_CHARS = 4_000


def too_long(length: int, limit: int = MAX_MESSAGE_CHARS, *, what: str = "your message") -> str:
    """Return the customer-facing explanation for a text over ``limit`` characters."""
    return (f"{what[:1].upper()}{what[1:]} is too long ({length:,} characters; the limit is {limit:,}). "
            "Please send a shorter one.")
