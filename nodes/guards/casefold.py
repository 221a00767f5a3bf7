"""Case-insensitive regexes run as case-sensitive ones on a case-folded copy of the text.

Python's ``re`` skips quickly to where a match can start only when the pattern begins with a
literal or a character set it can test without folding case; a pattern compiled with
``IGNORECASE`` gets no such skip, and every alternative of a long cue list ("passenger name",
"my wife", "a nombre de", ...) is tried at every position. The PII cue patterns are written in
lower case, so the same pattern without ``IGNORECASE`` over a lower-cased copy of the text finds
the same matches two to ten times faster (``python -m evals.fuzz`` has the numbers).

The copy must compare letters exactly as ``re.IGNORECASE`` does and keep every offset:
:func:`fold` lower-cases with one character for one character. ``str.lower`` does that for
every code point but one (U+0130, capital I with dot, lower-cases to two characters), and ``re``
also equates two letters ``lower`` does not (U+0131 dotless i with ``i``, U+017F long s with
``s``); those three are mapped first. ``tests/test_pii_fast.py`` checks every code point against
``re`` itself for each letter the cue patterns use.

:func:`case_free` turns a pattern into its folded form, and refuses one it cannot prove
equivalent: a letter outside a case-insensitive part (it would match the folded text
differently) or an upper-case letter inside one (it could never match the folded text).
"""

from __future__ import annotations

import re

__all__ = ["case_free", "fold"]

# The only code point whose lower case is longer than itself, and the two letters ``re``
# folds together with an ASCII letter although ``str.lower`` keeps them apart.
_EXTRA_FOLDS = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s"})


def fold(text: str) -> str:
    """Return ``text`` lower-cased as ``re.IGNORECASE`` compares letters, one character for one."""
    if text.isascii():
        return text.lower()
    return text.translate(_EXTRA_FOLDS).lower()


def _check_source(source: str, *, ignorecase: bool) -> None:
    """Raise ValueError unless ``source`` matches folded text as it matches the original text.

    Letters may only appear inside a case-insensitive scope (``(?i:...)`` or the whole pattern
    under ``re.IGNORECASE``), in lower case, or as the range pair ``A-Z``/``a-z`` of a class.
    """
    scopes: list[bool] = []  # per open group: is it case-insensitive?
    i, n = 0, len(source)

    def insensitive() -> bool:
        return ignorecase or any(scopes)

    while i < n:
        ch = source[i]
        if ch == "\\":
            i += 2  # an escape (\d, \b, \Z, \n, \., ...): never a literal letter to fold
            continue
        if ch == "[":
            end = i + 1
            if end < n and source[end] == "^":
                end += 1
            if end < n and source[end] == "]":
                end += 1  # a leading "]" is a literal
            while end < n and source[end] != "]":
                end += 2 if source[end] == "\\" else 1
            body = re.sub(r"\\.", "", source[i + 1 : end])
            if "A-Z" in body and "a-z" in body:
                body = body.replace("A-Z", "")  # dead on folded text; a-z covers it
            letters = [c for c in body if c.isalpha()]
            if letters and not insensitive():
                raise ValueError(f"letters in a case-sensitive class at {i}: {source[i:end + 1]!r}")
            if any(fold(c) != c for c in letters):
                raise ValueError(f"an upper-case letter in a class at {i}: {source[i:end + 1]!r}")
            i = end + 1
            continue
        if ch == "(":
            if source.startswith("(?i:", i):
                scopes.append(True)
                i += 4
                continue
            named = re.match(r"\(\?P(<\w+>|=\w+\))", source[i:])
            if named:
                if named.group(1).startswith("<"):
                    scopes.append(False)  # a named group; "(?P=name)" is a back-reference, no group
                i += len(named.group())
                continue
            if source.startswith("(?", i) and not re.match(r"\(\?(?::|=|!|<=|<!)", source[i:]):
                raise ValueError(f"unsupported inline flag group at {i}: {source[i:i + 6]!r}")
            scopes.append(False)
            i += 1
            continue
        if ch == ")":
            if scopes:
                scopes.pop()
            i += 1
            continue
        if ch.isalpha():
            if not insensitive():
                raise ValueError(f"the letter {ch!r} at {i} is outside a case-insensitive part")
            if fold(ch) != ch:
                raise ValueError(f"the letter {ch!r} at {i} is upper case in a case-insensitive part")
        i += 1


def case_free(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """Return a pattern that finds, in ``fold(text)``, exactly the matches ``pattern`` finds in ``text``.

    Raises:
        ValueError: The pattern has letters this rewrite cannot prove equivalent (see module doc).
    """
    ignorecase = bool(pattern.flags & re.IGNORECASE)
    _check_source(pattern.pattern, ignorecase=ignorecase)
    flags = pattern.flags & ~(re.IGNORECASE | re.UNICODE)  # str patterns are Unicode anyway
    return re.compile(pattern.pattern.replace("(?i:", "(?:"), flags)
