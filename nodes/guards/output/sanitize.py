"""Output layer ``sanitize``: nh3 HTML sanitising and removal of dangerous markdown links."""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar
from urllib.parse import unquote

import nh3

from nodes.guards.base import Action, GuardContext, GuardResult, register_guard
from nodes.guards.output._common import (
    _MD_AUTOLINK,
    _MD_BARE_DEST,
    _MD_LINK,
    _MD_REFDEF,
    _PLACEHOLDER,
    _SCHEME,
    _SCHEME_NOISE,
    _result,
)

__all__ = ["DEFAULT_ALLOWED_TAGS", "SanitizeGuard"]

DEFAULT_ALLOWED_TAGS = frozenset(
    {"a", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "hr", "i",
     "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody", "td", "th",
     "thead", "tr", "u", "ul"}
)
_DROP_WITH_CONTENT = frozenset(
    {"script", "style", "iframe", "object", "embed", "noscript", "template", "svg", "math",
     "textarea", "select", "xmp", "noembed", "noframes"}
)
_TAGLIKE = re.compile(r"<[A-Za-z/!?]")
_DANGEROUS_SCHEMES = frozenset({"javascript", "vbscript", "data", "file", "blob", "filesystem"})


def _link_scheme(dest: str) -> str | None:
    """Return the lower-case scheme a browser would see in ``dest`` (None if relative)."""
    cleaned = _SCHEME_NOISE.sub("", html.unescape(unquote(dest)))
    cleaned = unicodedata.normalize("NFKC", cleaned)
    m = _SCHEME.match(cleaned)
    return m.group(1).lower() if m else None


@register_guard("sanitize")
class SanitizeGuard:
    """Sanitise HTML in the answer with nh3 and drop script links in markdown.

    HTML is cleaned only when the answer contains something tag-like, so plain markdown is
    left byte for byte. Placeholders such as ``<EMAIL_ADDRESS_1>`` survive (they look like
    tags). Decisions: MODIFY ``sanitized`` (metadata says what), else ALLOW.
    """

    name: ClassVar[str]

    def __init__(
        self,
        *,
        tags: Sequence[str] | None = None,
        attributes: Mapping[str, Sequence[str]] | None = None,
        url_schemes: Sequence[str] = ("http", "https", "mailto"),
    ) -> None:
        """Configure the allow-lists (defaults suit markdown-rendered chat answers)."""
        self.tags = set(tags) if tags is not None else set(DEFAULT_ALLOWED_TAGS)
        self.attributes = (
            {k: set(v) for k, v in attributes.items()}
            if attributes is not None
            else {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}
        )
        self.url_schemes = set(url_schemes)
        self._clean_content = set(_DROP_WITH_CONTENT - self.tags)

    def _markdown(self, text: str) -> tuple[str, int]:
        removed = 0

        def link(m: re.Match[str]) -> str:
            nonlocal removed
            scheme = _link_scheme(m.group(3))
            if scheme in _DANGEROUS_SCHEMES:
                removed += 1
                return m.group(2)  # keep the visible text, drop the link
            return m.group(0)

        def drop_dangerous(replacement: str) -> Callable[[re.Match[str]], str]:
            """Replace a match whose first group is a dangerous link with ``replacement``."""

            def sub(m: re.Match[str]) -> str:
                nonlocal removed
                if _link_scheme(m.group(1)) in _DANGEROUS_SCHEMES:
                    removed += 1
                    return replacement
                return m.group(0)

            return sub

        autolink, refdef, dest = drop_dangerous(""), drop_dangerous(""), drop_dangerous("]")

        if "](" in text:
            text = _MD_LINK.sub(link, text)
            text = _MD_BARE_DEST.sub(dest, text)
        if "<" in text:
            text = _MD_AUTOLINK.sub(autolink, text)
        if "]:" in text:
            text = _MD_REFDEF.sub(refdef, text)
        return text, removed

    def check(self, text: str, ctx: GuardContext | None = None) -> GuardResult:
        """Sanitise ``text``; MODIFY if anything was removed or escaped."""
        out, js_links = self._markdown(text)
        html_cleaned = False
        if _TAGLIKE.search(out):
            kept: list[str] = []

            def stash(m: re.Match[str]) -> str:
                kept.append(m.group(0))
                return f"\ue000{len(kept) - 1}\ue001"

            protected = _PLACEHOLDER.sub(stash, out.replace("\ue000", "").replace("\ue001", ""))
            cleaned = nh3.clean(
                protected,
                tags=self.tags,
                clean_content_tags=self._clean_content,
                attributes=self.attributes,
                url_schemes=self.url_schemes,
                link_rel="noopener noreferrer nofollow",
                strip_comments=True,
            )
            # Placeholders look like tags; put them back as typed (they carry no attributes).
            cleaned = re.sub(
                "\ue000([0-9]{1,6})\ue001",
                lambda m: kept[int(m.group(1))] if int(m.group(1)) < len(kept) else "",
                cleaned,
            )
            html_cleaned = cleaned != out
            out = cleaned
        if out == text:
            return _result(Action.ALLOW, self.name)
        return _result(
            Action.MODIFY, self.name, "sanitized", text=out,
            metadata={"html": html_cleaned, "script_links": js_links},
        )
