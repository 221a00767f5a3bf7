"""Helpers shared by the output layers."""

from __future__ import annotations

import re
from typing import Any

from nodes.guards.base import Action, GuardResult

__all__: list[str] = []

# Markdown link syntax, shared by ``sanitize`` (dangerous schemes) and ``url_allowlist``
# (hosts).
# A link destination may hold one level of balanced parentheses ("javascript:alert(1)").
# The two alternatives start with different characters, and link text excludes "[", so
# each start position fails fast and matching stays linear.
_MD_DEST = (
    r"\([ \t]{0,16}<?((?:[^\s()<>]|\([^\s()<>]{0,512}\)){0,2048})"
    r">?(?:[ \t]{1,16}\"[^\"\n]{0,500}\")?[ \t]{0,16}\)"
)
_MD_LINK = re.compile(r"(!?)\[([^\[\]\n]{0,1000})\]" + _MD_DEST)
# Second pass for links the first one cannot see (nested brackets, very long text): just
# the "](destination)" part.
_MD_BARE_DEST = re.compile(r"\]" + _MD_DEST)
_MD_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.\-]{1,31}:[^<>\s]{0,4096})>")
_MD_REFDEF = re.compile(r"(?m)^[ ]{0,3}\[[^\]\n]{1,1000}\]:[ \t]{0,16}<?([^\s>]{1,4096})>?.{0,500}$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]{0,31}):")
_SCHEME_NOISE = re.compile(r"[\x00-\x20\x7f-\x9f]")
_PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)_([1-9][0-9]*)>")


def _result(action: Action, layer: str, reason: str = "", **kw: Any) -> GuardResult:
    return GuardResult(action=action, layer=layer, reason=reason, **kw)
