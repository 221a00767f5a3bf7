"""Layer 1: fast pre-filters (length, encoding, normalisation, multilingual blocklist).

The blocklist is matched by one compiled regular expression per key form, built as a trie of
escaped literals: alternations and character classes only, no quantifier at all. Python's
regex engine therefore tries at most one path of at most ``max phrase length`` characters at
each position, so a search is linear in the input (``tests/test_prefilter.py`` runs it on
100 KB of adversarial text).

Phrases are matched on :func:`nodes.guards.normalize.matching_key` of the clean text, of the
rot13 forms of every phrase, of text hidden in tag characters or variation selectors, and of
base64 / hex / URL-encoded / entity-encoded payloads (decoded to depth 2).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from nodes.guards.base import Action, GuardContext, GuardResult, register_guard
from nodes.guards.normalize import (
    BLOCKLIST_DIR,
    Normalized,
    find_payloads,
    matching_key,
    normalize,
    rot13,
    strip_accents,
)

__all__ = [
    "DEFAULT_LANGUAGES",
    "DEFAULT_MAX_CHARS",
    "BlocklistHit",
    "BlocklistMatcher",
    "InjectionScanner",
    "PreFilter",
    "available_languages",
    "load_blocklist",
]

_MAX_DEPTH = 2
#: The longest message read when the policy sets no ``max_chars``.
DEFAULT_MAX_CHARS = 4000
# Separator-free matching only for phrases long enough that gluing words together cannot
# make them appear by accident ("the system prompted" must not match "system prompt").
_COMPACT_MIN_WORDS = 3
_COMPACT_MIN_CHARS = 14


@dataclass(frozen=True, slots=True)
class BlocklistHit:
    """One blocklist match.

    Attributes:
        lang: Language of the blocklist file (``any`` for chat-template markers, ``custom``
            for policy-supplied phrases).
        pattern_id: The phrase's pattern id.
        via: How it was found: ``text``, ``compact``, ``rot13``, ``reversed``, ``marker``,
            prefixed by the decoding chain (``base64>text``, ``tags>compact``...).
    """

    lang: str
    pattern_id: str
    via: str = "text"

    @property
    def reason(self) -> str:
        """Return the decision reason ``blocklist:<lang>:<pattern_id>``."""
        return f"blocklist:{self.lang}:{self.pattern_id}"


def available_languages() -> tuple[str, ...]:
    """Return the languages that have a blocklist file."""
    return tuple(
        sorted(
            p.stem
            for p in BLOCKLIST_DIR.glob("*.txt")
            if len(p.stem) == 2 and p.stem.isalpha()
        )
    )


#: Every shipped list: a list that ships but is not loaded protects nobody (a Russian
#: "ignore all previous instructions" used to pass layer 1).
DEFAULT_LANGUAGES: tuple[str, ...] = available_languages()


def _parse_lines(text: str) -> list[tuple[str, str]]:
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        pattern_id, sep, phrase = line.partition(":")
        if not sep or not phrase.strip():
            raise ValueError(f"bad blocklist line {raw!r}: expected 'pattern_id: phrase'")
        entries.append((pattern_id.strip(), phrase.strip()))
    return entries


@lru_cache(maxsize=32)
def load_blocklist(lang: str) -> tuple[tuple[str, str], ...]:
    """Return the ``(pattern_id, phrase)`` entries of one language's blocklist file."""
    if not (len(lang) == 2 and lang.isalpha()):
        raise ValueError(f"invalid language code {lang!r}")
    path = BLOCKLIST_DIR / f"{lang}.txt"
    if not path.is_file():
        raise ValueError(f"no blocklist for language {lang!r}; have {available_languages()}")
    return tuple(_parse_lines(path.read_text("utf-8")))


def _trie_regex(literals: Iterable[str]) -> str:
    """Return a quantifier-free regex matching exactly the prefix-free set ``literals``."""
    trie: dict[str, Any] = {}
    for lit in literals:
        node = trie
        for ch in lit:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        if "" in node:
            return ""
        branches: list[str] = []
        leaves: list[str] = []
        for ch in sorted(node):
            sub = build(node[ch])
            if sub:
                branches.append(re.escape(ch) + sub)
            else:
                leaves.append(ch)
        if leaves:
            branches.append(
                re.escape(leaves[0])
                if len(leaves) == 1
                else "[" + "".join(re.escape(c) for c in leaves) + "]"
            )
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return build(trie)


def _prefix_free(forms: Iterable[str]) -> list[str]:
    # A form that extends a shorter form adds nothing to a search (the shorter one matches
    # wherever it does) and would need an optional group; drop it.
    kept: list[str] = []
    for form in sorted(set(forms)):
        if kept and form.startswith(kept[-1]):
            continue
        kept.append(form)
    return kept


def _compile(forms: Iterable[str]) -> re.Pattern[str] | None:
    literals = _prefix_free(forms)
    return re.compile(_trie_regex(literals)) if literals else None


class BlocklistMatcher:
    """Multilingual phrase matcher over normalised keys (linear time, see module doc)."""

    def __init__(
        self,
        entries: Iterable[tuple[str, str, str]],
        *,
        markers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Build the matcher.

        Args:
            entries: ``(lang, pattern_id, phrase)`` triples.
            markers: ``(pattern_id, literal)`` pairs matched case-insensitively on the
                clean text itself (chat-template tokens).
        """
        self._words: dict[str, BlocklistHit] = {}
        self._compact: dict[str, BlocklistHit] = {}
        for lang, pattern_id, phrase in entries:
            base = strip_accents(phrase.casefold())
            forms = {base: "text"}
            forms.setdefault(rot13(base), "rot13")
            forms.setdefault(base[::-1], "reversed")
            for variant, via in forms.items():
                words, compact = matching_key(variant)
                if words.strip():
                    self._words.setdefault(words, BlocklistHit(lang, pattern_id, via))
                if len(words.split()) >= _COMPACT_MIN_WORDS and len(compact) >= _COMPACT_MIN_CHARS:
                    self._compact.setdefault(
                        compact,
                        BlocklistHit(lang, pattern_id, "compact" if via == "text" else via),
                    )
        self._words_re = _compile(self._words)
        self._compact_re = _compile(self._compact)
        self._markers: dict[str, BlocklistHit] = {}
        for pattern_id, literal in markers:
            self._markers.setdefault(literal.casefold(), BlocklistHit("any", pattern_id, "marker"))
        self._markers_re = (
            re.compile("|".join(re.escape(m) for m in _prefix_free(self._markers)), re.IGNORECASE)
            if self._markers
            else None
        )
        self._marker_first = frozenset(m[0] for m in self._markers)

    @property
    def size(self) -> int:
        """Return the number of distinct literal forms matched."""
        return len(self._words) + len(self._compact) + len(self._markers)

    def _lookup(self, table: Mapping[str, BlocklistHit], matched: str) -> BlocklistHit:
        hit = table.get(matched)
        if hit is not None:
            return hit
        # The regex matched a pruned form's prefix; find the entry it stands for.
        return next(v for k, v in sorted(table.items()) if k.startswith(matched))

    def search_key(self, words: str, compact: str) -> BlocklistHit | None:
        """Return the first phrase found in the matching keys, or None."""
        if self._words_re is not None:
            m = self._words_re.search(words)
            if m:
                return self._lookup(self._words, m.group(0))
        if self._compact_re is not None:
            m = self._compact_re.search(compact)
            if m:
                return self._lookup(self._compact, m.group(0))
        return None

    def search_markers(self, text: str) -> BlocklistHit | None:
        """Return the first chat-template marker found in the clean text, or None."""
        if self._markers_re is None or not any(c in text for c in self._marker_first):
            return None
        m = self._markers_re.search(text)
        return self._lookup(self._markers, m.group(0).casefold()) if m else None

    def search(self, text: str) -> BlocklistHit | None:
        """Return the first phrase or marker found in an already clean text, or None."""
        hit = self.search_key(*matching_key(text)) or self.search_markers(text)
        if hit is None and not text.isascii():
            # The rot13 forms of the phrases cover ASCII text. rot13 tools leave accented
            # letters alone ("précédentes" -> "ceépéqragrf"), so undo rot13 on the text too.
            hit = self.search_key(*matching_key(rot13(text)))
            if hit is not None:
                hit = BlocklistHit(hit.lang, hit.pattern_id, "rot13")
        return hit


def _load_markers() -> tuple[tuple[str, str], ...]:
    path = BLOCKLIST_DIR / "markers.txt"
    return tuple(_parse_lines(path.read_text("utf-8"))) if path.is_file() else ()


@lru_cache(maxsize=16)
def _matcher(languages: tuple[str, ...], extra: tuple[tuple[str, str], ...]) -> BlocklistMatcher:
    entries: list[tuple[str, str, str]] = [
        (lang, pattern_id, phrase)
        for lang in languages
        for pattern_id, phrase in load_blocklist(lang)
    ]
    entries.extend(("custom", pattern_id, phrase) for pattern_id, phrase in extra)
    return BlocklistMatcher(entries, markers=_load_markers())


def _extra_entries(extra: Sequence[str] | Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    if isinstance(extra, Mapping):
        return tuple((str(k), str(v)) for k, v in extra.items())
    if isinstance(extra, str):
        raise TypeError("extra_patterns must be a list of phrases or a mapping id -> phrase")
    return tuple((f"extra_{i}", str(p)) for i, p in enumerate(extra))


class InjectionScanner:
    """Blocklist scan of a text and of everything hidden or encoded in it.

    Shared by the prefilter and by the tool-result injection layer.
    """

    def __init__(
        self,
        *,
        languages: Sequence[str] | str = DEFAULT_LANGUAGES,
        extra_patterns: Sequence[str] | Mapping[str, str] = (),
        decode_payloads: bool = True,
    ) -> None:
        """Build (or reuse, cached) the matcher for ``languages`` (or ``"all"``) plus ``extra_patterns``."""
        if isinstance(languages, str):
            if languages != "all":
                raise ValueError(f"languages must be a list of codes or 'all', got {languages!r}")
            languages = available_languages()
        langs = tuple(dict.fromkeys(str(lang).lower() for lang in languages))
        for lang in langs:
            load_blocklist(lang)  # fail at construction on an unknown language
        self.languages = langs
        self.decode_payloads = decode_payloads
        self.matcher = _matcher(langs, _extra_entries(extra_patterns))

    def scan_clean(self, clean: str, *, depth: int = 0) -> BlocklistHit | None:
        """Scan an already normalised text, then its decoded payloads (to depth 2)."""
        hit = self.matcher.search(clean)
        if hit is not None:
            return hit
        if self.decode_payloads and depth < _MAX_DEPTH:
            for kind, decoded in find_payloads(clean):
                inner = normalize(decoded)
                sub = self.scan_clean(inner.text, depth=depth + 1)
                if sub is None:
                    sub = self.scan_hidden(inner, depth + 1)
                if sub is not None:
                    return BlocklistHit(sub.lang, sub.pattern_id, f"{kind}>{sub.via}")
        return None

    def scan_hidden(self, norm: Normalized, depth: int = 1) -> BlocklistHit | None:
        """Scan the text normalisation found hidden in tag characters or selectors."""
        for kind, hidden in norm.hidden:
            sub = self.scan_clean(normalize(hidden).text, depth=depth)
            if sub is not None:
                return BlocklistHit(sub.lang, sub.pattern_id, f"{kind}>{sub.via}")
        return None

    def scan(self, text: str) -> tuple[Normalized, BlocklistHit | None]:
        """Normalise ``text`` and scan it with everything hidden in it."""
        norm = normalize(text)
        if norm.error is not None:
            return norm, None
        hit = self.scan_hidden(norm, 1) or self.scan_clean(norm.text)
        return norm, hit


@register_guard("prefilter")
class PreFilter:
    """Layer 1: length, encoding, normalisation and multilingual blocklist checks.

    Decisions: BLOCK ``length``, ``encoding:<kind>`` (``invalid_utf8``, ``surrogates``,
    ``control_chars``, ``zalgo``, ``tag_smuggling``) or ``blocklist:<lang>:<pattern_id>``;
    MODIFY ``normalized`` with the clean text when normalisation changed it; else ALLOW.
    Metadata never contains the text, only ids, counts and the names of the steps.
    """

    name: ClassVar[str]

    def __init__(
        self,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        min_chars: int = 1,
        languages: Sequence[str] | str = DEFAULT_LANGUAGES,
        decode_payloads: bool = True,
        extra_patterns: Sequence[str] | Mapping[str, str] = (),
        max_combining: int = 3,
        block_hidden_text: bool = True,
    ) -> None:
        """Configure the prefilter.

        Args:
            max_chars: Longest accepted message, in characters, before normalisation.
            min_chars: Shortest accepted message once surrounding whitespace is removed.
            languages: Blocklist languages to load (``blocklists/<lang>.txt``), or ``"all"``
                (the default is every shipped list too).
            decode_payloads: Decode base64/hex/rot13/URL/entity payloads and re-scan them.
            extra_patterns: More phrases (a list, or a mapping pattern id -> phrase), reported
                as ``blocklist:custom:<id>``.
            max_combining: Longest allowed run of stacked combining marks.
            block_hidden_text: Block text hidden in tag characters or variation selectors even
                when it matches no phrase (no honest customer sends it).
        """
        if max_chars < 1 or min_chars < 0 or min_chars > max_chars:
            raise ValueError("need 0 <= min_chars <= max_chars and max_chars >= 1")
        self.max_chars = max_chars
        self.min_chars = min_chars
        self.max_combining = max_combining
        self.block_hidden_text = block_hidden_text
        self.scanner = InjectionScanner(
            languages=languages, extra_patterns=extra_patterns, decode_payloads=decode_payloads
        )

    def _block(self, reason: str, **metadata: Any) -> GuardResult:
        return GuardResult(action=Action.BLOCK, layer=self.name, reason=reason, metadata=metadata)

    def check(self, text: str | bytes, ctx: GuardContext | None = None) -> GuardResult:
        """Check one message (``bytes`` are decoded as strict UTF-8 first)."""
        if isinstance(text, bytes | bytearray):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError:
                return self._block("encoding:invalid_utf8")
        n = len(text)
        if n > self.max_chars:
            return self._block("length", chars=n, max_chars=self.max_chars)
        if len(text.strip()) < self.min_chars:
            return self._block("length", chars=n, min_chars=self.min_chars)
        norm = normalize(text, max_combining=self.max_combining)
        if norm.error is not None:
            return self._block(f"encoding:{norm.error}", changes=list(norm.changes))
        scanner = self.scanner
        hit = scanner.scan_hidden(norm, 1) or scanner.scan_clean(norm.text)
        if hit is not None:
            return self._block(
                hit.reason, lang=hit.lang, pattern_id=hit.pattern_id, via=hit.via,
                changes=list(norm.changes),
            )
        if norm.hidden and self.block_hidden_text:
            return self._block(
                "encoding:tag_smuggling",
                hidden=[kind for kind, _ in norm.hidden],
                changes=list(norm.changes),
            )
        if norm.text != text:
            return GuardResult(
                action=Action.MODIFY,
                layer=self.name,
                reason="normalized",
                text=norm.text,
                metadata={"changes": list(norm.changes)},
            )
        return GuardResult(action=Action.ALLOW, layer=self.name)
