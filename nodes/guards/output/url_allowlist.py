"""Output layer ``url_allowlist``: links must point to an allow-listed host."""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from typing import ClassVar
from urllib.parse import unquote, urlsplit

from nodes.guards.base import Action, GuardContext, GuardResult, register_guard
from nodes.guards.output._common import (
    _MD_AUTOLINK,
    _MD_BARE_DEST,
    _MD_LINK,
    _MD_REFDEF,
    _SCHEME,
    _SCHEME_NOISE,
    _result,
)

__all__ = ["UrlAllowlist", "host_allowed"]

_BARE_URL = re.compile(r"(?i)(?<![\w@/.])(?:https?://|www\.)[^\s<>\"'`]{1,4096}")
_HTML_ANCHOR = re.compile(r"(?is)<a\b[^<>]{0,4096}>[^<]{0,4096}</a\s{0,8}>")
_HTML_SRC_TAG = re.compile(r"(?is)<(?:img|iframe|source|video|audio|embed)\b[^<>]{0,4096}>")
_HTML_URL_ATTR = re.compile(
    r"""(?is)\b(?:href|src)\s{0,8}=\s{0,8}(?:"([^"]{0,4096})"|'([^']{0,4096})'|([^\s>]{1,4096}))"""
)
_TRAILING = ".,;:!?*_~'\""
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_SAFE_SCHEMES = frozenset({"mailto", "tel"})
_HOSTNAME = re.compile(r"[a-z0-9_.-]{1,253}")


def _normalise_host(host: str) -> str | None:
    host = unquote(host).translate(_DOTS)
    host = unicodedata.normalize("NFKC", host).strip().rstrip(".").lower()
    if not host:
        return None
    if not host.isascii():
        try:
            host = ".".join(
                label.encode("idna").decode("ascii") if not label.isascii() else label
                for label in host.split(".")
            )
        except UnicodeError:
            return None
    # Anything else (a decoded "/" or "@", spaces...) makes the URL invalid or ambiguous.
    return host if _HOSTNAME.fullmatch(host) else None


def host_allowed(url: str, allow: Sequence[str]) -> bool:
    r"""Return True if ``url`` is an http(s) URL on an allow-listed host (or a subdomain).

    Handles what browsers do and naive parsers miss: userinfo (``https://good.com@evil.com``
    goes to evil.com), backslashes (``https://evil.com\@good.com``), tabs and newlines inside
    the URL, percent-encoded and entity-encoded characters, full-width dots, IDN hosts
    (compared in punycode, so a Cyrillic look-alike of an allowed host is refused) and
    scheme-relative ``//host`` links. ``mailto:`` and ``tel:`` links are allowed; any other
    scheme is refused.
    """
    u = _SCHEME_NOISE.sub("", html.unescape(url)).replace("\\", "/")
    u = unicodedata.normalize("NFKC", u)
    lower = u.lower()
    if lower.startswith("//"):
        u = "https:" + u
    elif lower.startswith("www."):
        u = "https://" + u
    m = _SCHEME.match(u)
    if m is None:
        return True  # relative link: stays on the rendering site
    scheme = m.group(1).lower()
    if scheme in _SAFE_SCHEMES:
        return True
    if scheme not in ("http", "https"):
        return False
    try:
        host = urlsplit(u).hostname
    except ValueError:
        return False
    norm = _normalise_host(host or "")
    if norm is None:
        return False
    for entry in allow:
        allowed = _normalise_host(entry)
        if allowed and (norm == allowed or norm.endswith("." + allowed)):
            return True
    return False


@register_guard("url_allowlist")
class UrlAllowlist:
    """Replace links to hosts outside the allow-list with ``[link removed]``.

    Covers markdown links and images, autolinks, HTML ``href``/``src`` and bare URLs (also
    ``www.`` ones that markdown renderers auto-link). An image on a foreign host is the
    classic data-exfiltration channel of an injected model, so it goes too.
    """

    name: ClassVar[str]

    def __init__(self, *, allow: Sequence[str] = (), replacement: str = "[link removed]") -> None:
        """Configure the allowed hosts (each also allows its subdomains)."""
        if isinstance(allow, str):
            allow = (allow,)
        self.allow = tuple(a for a in allow if a)
        self.replacement = replacement

    def _ok(self, url: str) -> bool:
        return host_allowed(url, self.allow)

    def check(self, text: str, ctx: GuardContext | None = None) -> GuardResult:
        """Remove every link whose host is not allowed; MODIFY if any was removed."""
        removed = 0

        def md(m: re.Match[str]) -> str:
            nonlocal removed
            if self._ok(m.group(3)):
                return m.group(0)
            removed += 1
            return self.replacement

        def md_dest(m: re.Match[str]) -> str:
            nonlocal removed
            if self._ok(m.group(1)):
                return m.group(0)
            removed += 1
            return "] " + self.replacement

        def tag(m: re.Match[str]) -> str:
            nonlocal removed
            for attr in _HTML_URL_ATTR.finditer(m.group(0)):
                url = attr.group(1) or attr.group(2) or attr.group(3) or ""
                if not self._ok(url):
                    removed += 1
                    return self.replacement
            return m.group(0)

        def autolink(m: re.Match[str]) -> str:
            nonlocal removed
            if self._ok(m.group(1)):
                return m.group(0)
            removed += 1
            return self.replacement

        def refdef(m: re.Match[str]) -> str:
            nonlocal removed
            if self._ok(m.group(1)):
                return m.group(0)
            removed += 1
            return ""

        def bare(m: re.Match[str]) -> str:
            nonlocal removed
            url = m.group(0)
            tail = ""
            while url and url[-1] in _TRAILING:
                tail = url[-1] + tail
                url = url[:-1]
            if url.endswith(")") and url.count("(") < url.count(")"):
                tail = ")" + tail
                url = url[:-1]
            if self._ok(url):
                return m.group(0)
            removed += 1
            return self.replacement + tail

        out = text
        if "](" in out:
            out = _MD_LINK.sub(md, out)
            out = _MD_BARE_DEST.sub(md_dest, out)
        if "<" in out:
            out = _HTML_ANCHOR.sub(tag, out)
            out = _HTML_SRC_TAG.sub(tag, out)
            out = _MD_AUTOLINK.sub(autolink, out)
        if "]:" in out:
            out = _MD_REFDEF.sub(refdef, out)
        lower = out.lower()
        if "http" in lower or "www." in lower:
            out = _BARE_URL.sub(bare, out)
        if not removed:
            return _result(Action.ALLOW, self.name)
        return _result(
            Action.MODIFY, self.name, "links_removed", text=out, metadata={"removed": removed}
        )
