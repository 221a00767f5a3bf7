"""Input layer: code carried in a customer message (SQL, HTML/JavaScript, template, tool-call syntax).

A customer writes sentences; a message that carries ``<script>``, an ``onerror=`` handler,
``' OR '1'='1``, ``UNION SELECT``, ``{{ self.__init__.__globals__ }}``, ``${jndi:...}`` or
tool-call arguments (``amount=-500``, ``"force": true``) is aimed at whatever stores, renders or
executes the text downstream (the agent's tools, the reviewer console, logs), not at a person.
The n-gram heads learn these poorly (few examples, punctuation-heavy), so this layer matches
their syntax directly, on the text and on what it hides (base64, URL-encoding, rot13...:
:func:`~nodes.guards.normalize.decoded_variants`). It BLOCKs by default (``action: escalate``
makes it uncertain); ``metadata`` names the kinds found, never the text.
"""

from __future__ import annotations

import re
import time
from typing import ClassVar

from nodes.guards.base import Detector, GuardContext, GuardResult, register_guard
from nodes.guards.normalize import decoded_variants

__all__ = ["CodePayloadLayer", "find_code"]

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("html", re.compile(
        r"<\s*/?\s*(?:script|iframe|object|embed|applet|meta|base|form)\b"
        r"|<\s*(?:img|svg|body|video|audio|input|details|a|div|image)\b[^>]{0,200}?\bon[a-z]{3,20}\s*="
        r"|\bjavascript\s*:|\bdocument\s*\.\s*(?:cookie|location|domain)\b|\blocalStorage\s*\.",
        re.IGNORECASE,
    )),
    ("sql", re.compile(
        r"['\"`]\s*\)?\s*;\s*(?:drop|delete|update|insert|truncate|alter|exec|select|shutdown)\b"
        r"|['\"`]\s*(?:or|and)\s+['\"`]?\w{1,10}['\"`]?\s*=\s*['\"`]?\w{1,10}"
        r"|\bunion\s+(?:all\s+)?select\b|;\s*(?:drop|truncate)\s+table\b|\bxp_cmdshell\b"
        r"|\bdelete\s+from\s+\w+\s+where\b|\bupdate\s+\w+\s+set\s+\w+\s*=",
        re.IGNORECASE,
    )),
    ("python", re.compile(
        r"\b__import__\s*\(|\bos\s*\.\s*(?:system|popen)\s*\(|\b(?:eval|exec|subprocess\.\w+)\s*\(\s*['\"]",
    )),
    # A markdown image is fetched when rendered: its URL can carry data out (no customer sends one).
    ("markdown_image", re.compile(r"!\[[^\]]{0,200}\]\(\s*https?://", re.IGNORECASE)),
    ("template", re.compile(
        r"\{\{[^{}]{0,200}?(?:__\w+__|\bconfig\b|\bself\b|\brequest\b|\blipsum\b|\bcycler\b|\w\(\))[^{}]{0,200}?\}\}"
        r"|\{%[^%]{0,200}%\}|\$\{\s*(?:jndi|env|sys|java|script)\s*:|<%=?[^%]{0,200}%>|#\{[^}]{0,100}\}",
        re.IGNORECASE,
    )),
    ("tool_args", re.compile(
        r"\b(?:amount|price|total|payment_id|user_id|reservation_id|refundable|force|status|override|role|is_admin)"
        r"\s*=\s*[-\w\"']"
        r"|\b[a-z]+(?:_[a-z]+)+\s*=\s*[-\w\"']|\bconfirmed\s*=\s*(?:true|yes|1)\b"
        r"|[{,]\s*\"(?:action|tool|function|force|role|override|is_admin|name|arguments)\"\s*:",
        re.IGNORECASE,
    )),
)


def find_code(text: str) -> tuple[str, ...]:
    """Return the kinds of code ``text`` carries.

    Kinds: ``html``, ``sql``, ``python``, ``markdown_image``, ``template``, ``tool_args``.
    """
    return tuple(kind for kind, pattern in _PATTERNS if pattern.search(text))


@register_guard("code_payload")
class CodePayloadLayer(Detector):
    """Guard layer: stop SQL, HTML/JavaScript, template and tool-call payloads (module docstring)."""

    name: ClassVar[str] = "code_payload"

    def check(self, text: str, ctx: GuardContext) -> GuardResult:
        """Return BLOCK/ESCALATE when ``text`` (or what it hides) carries code."""
        start = time.perf_counter()
        kinds, via = find_code(text), ""
        if not kinds:
            for kind, variant in decoded_variants(text):
                kinds = find_code(variant)
                if kinds:
                    via = kind
                    break
        if not kinds:
            return self.allowed(start)
        return self.found(start, {"kinds": list(kinds), **({"via": via} if via else {})})
