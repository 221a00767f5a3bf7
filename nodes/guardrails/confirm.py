"""``guardrail.confirm``: the confirm gate, bound to a hash of the exact call.

The gate is an ``interrupt()``. Its payload names the tool, the arguments, the amount
computed by code and the message the customer sees, plus ``args_hash``. A resume only
counts as consent when it is ``{"action": "confirm", "args_hash": <the same hash>}``:
confirming USD 130 never authorises USD 1300, and nothing the model writes can
resume a graph.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ConfirmAnswer",
    "call_hash",
    "parse_confirm_resume",
    "parse_confirmation_text",
]

# A reply confirms only when it is nothing but a consent phrase ("yes", "yes please, go ahead!");
# "sure? what does it cost" or "yes but only 1 bag" is not consent.
_YES = re.compile(
    r"^\s*(?:yes|y|yeah|yep|ok|okay|sure|confirm(?:ed)?|i confirm|go ahead|proceed|do it|"
    r"s[ií]|confirmo|oui|je confirme|ja|ich best[äa]tige|sim|confermo)"
    r"(?:[\s,]+(?:please|thanks|thank you|go ahead|proceed|do it|confirm(?:ed)?|i confirm))*[\s.!]*$",
    re.IGNORECASE,
)
# Declining is safe, so any reply that starts with a refusal cancels.
_NO = re.compile(
    r"^\s*(?:no|n|nope|cancel|stop|don'?t|do not|abort|non|nein|n[ãa]o|annulla|cancelar)\b",
    re.IGNORECASE,
)


def call_hash(tool: str, args: Mapping[str, Any], facts: Mapping[str, Any], state: str = "") -> str:
    """Hash the exact call: tool, canonical arguments, the code-computed quote and the state version.

    A consent or approval bound to this hash authorises exactly that change of exactly that
    state: the write's transaction recomputes it and refuses to write on any difference.
    """
    body = json.dumps(
        {"tool": tool, "args": args, "quote": facts.get("quote"), **({"state": state} if state else {})},
        sort_keys=True, separators=(",", ":"), default=str,
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfirmAnswer:
    """A parsed resume value for a confirm gate."""

    action: Literal["confirm", "cancel", "invalid"]
    args_hash: str = ""
    actor: str = ""
    reason: str = ""


def parse_confirm_resume(value: Any) -> ConfirmAnswer:
    """Parse a resume value; anything but the documented dict shape is invalid."""
    if not isinstance(value, Mapping):
        return ConfirmAnswer(action="invalid", reason="resume value must be an object")
    action = value.get("action")
    if action not in ("confirm", "cancel"):
        return ConfirmAnswer(action="invalid", reason="action must be 'confirm' or 'cancel'")
    args_hash = value.get("args_hash")
    if action == "confirm" and not isinstance(args_hash, str):
        return ConfirmAnswer(action="invalid", reason="a confirmation must carry args_hash")
    return ConfirmAnswer(
        action=action, args_hash=args_hash or "", actor=str(value.get("actor", "")),
    )


def parse_confirmation_text(text: str) -> Literal["confirm", "cancel"] | None:
    """Classify a customer's chat reply to a pending gate by code (never by the model)."""
    if _NO.match(text):
        return "cancel"
    if _YES.match(text):
        return "confirm"
    return None
