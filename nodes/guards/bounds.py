"""Bounded work per text: split a long text into overlapping chunks that scanners read one by one.

A scanner whose cost grows faster than the length of what it reads (a regex engine on some
shapes, spaCy's tokenizer on long tokens) is linear again when it never reads more than a
chunk: the work per chunk is bounded, the number of chunks grows with the text, and the time
budget (``GuardContext.check_deadline``) is checked between chunks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["CHUNK_CHARS", "CHUNK_OVERLAP", "MAX_TOKEN_CHARS", "blank_long_tokens", "text_chunks"]

#: The most characters one scanner call reads.
CHUNK_CHARS = 2_000
#: Characters two neighbouring chunks share: longer than any entity a scanner looks for, so
#: one that straddles a cut is whole in one of them.
CHUNK_OVERLAP = 200
#: The longest run without spaces handed to NER; longer ones are blanked for it (no name is
#: that long, and spaCy's tokenizer slows down with the length of a token).
MAX_TOKEN_CHARS = 64

_LONG_TOKEN = re.compile(rf"\S{{{MAX_TOKEN_CHARS + 1},}}")
_BLANK = re.compile(r"\s")


def text_chunks(text: str, size: int = CHUNK_CHARS, overlap: int = CHUNK_OVERLAP) -> Iterator[tuple[int, str]]:
    """Yield ``(offset, chunk)`` pairs covering ``text``, each at most ``size`` characters.

    Cuts fall on a blank when there is one in the last ``overlap`` characters of a chunk, so a
    word is rarely split; consecutive chunks share at least ``overlap`` characters.
    """
    if size <= overlap * 2:
        raise ValueError("a chunk must be longer than twice the overlap")
    n = len(text)
    start = 0
    while True:
        end = min(start + size, n)
        if end < n:
            window = text[end - overlap:end]
            blanks = [m.start() for m in _BLANK.finditer(window)]
            if blanks:
                end = end - overlap + blanks[-1] + 1
        yield start, text[start:end]
        if end >= n:
            return
        start = max(end - overlap, start + 1)


def blank_long_tokens(text: str) -> str:
    """Replace every run of more than :data:`MAX_TOKEN_CHARS` non-blank characters by spaces (same length)."""
    return _LONG_TOKEN.sub(lambda m: " " * len(m.group()), text)
