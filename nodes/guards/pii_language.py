"""Which language a customer wrote in, for the PII layer's NER (py3langid, loaded lazily).

The detector chooses among :data:`LANGUAGES`; :func:`detect_language` names the language of a
text, and the PII layer runs English NER only where :func:`ner_language` says so.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["LANGUAGES", "detect_language", "language_identifier", "ner_language"]

#: Languages the detector chooses between (py3langid, restricted to these). Text in
#: another Latin-script language is given the closest of them; non-Latin text is "und".
LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "it", "pt", "nl")
# Below this many letters the detector is unsure; English NER still runs there when
# English is at least this likely (a short "Thanks, Maria").
_SHORT_TEXT_LETTERS = 24
_SHORT_TEXT_EN_MIN = 0.2
# What the detector should not read: placeholders, e-mails, URLs, identifiers, digits.
_LANG_NOISE_RE = re.compile(
    r"<[A-Z][A-Z0-9_]*_[0-9]+>|\S+@\S+|https?://\S+|\b\w*\d\w*\b|\b[A-Z]{2,}\b|_"
)
_LANG_ID: Any = None
_LANG_LOCK = threading.Lock()


def language_identifier() -> Any:
    """Return py3langid's identifier (its model ships in the wheel as a .npz, no pickle)."""
    global _LANG_ID
    if _LANG_ID is None:
        with _LANG_LOCK:
            if _LANG_ID is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
                identifier.set_languages(list(LANGUAGES))
                _LANG_ID = identifier
    return _LANG_ID


_LANG_SAMPLE_CHARS = 400


def _language_scores(text: str) -> tuple[int, dict[str, float]]:
    # The first few hundred characters tell the language as well as the whole text, and the
    # identifier's cost grows with the length (a JSON tool result is thousands of characters).
    cleaned = _LANG_NOISE_RE.sub(" ", text[:_LANG_SAMPLE_CHARS])
    letters = [ch for ch in cleaned if ch.isalpha()]
    if not letters:
        return 0, {}
    latin = sum(1 for ch in letters if ch <= "\u024f")
    if latin < 0.5 * len(letters):
        return len(letters), {}
    ranked = language_identifier().rank(cleaned.lower())
    return len(letters), {str(lang): float(np.float64(p)) for lang, p in ranked}


def detect_language(text: str) -> str:
    """Return the language of ``text``: one of :data:`LANGUAGES`, or ``"und"``.

    ``"und"`` (undetermined) is text without letters or mostly in a non-Latin script.
    """
    _, scores = _language_scores(text)
    if not scores:
        return "und"
    return max(scores, key=scores.__getitem__)


def ner_language(text: str, loaded: Iterable[str]) -> str | None:
    """Return the loaded NER language to run on ``text``, or None (patterns and cues only)."""
    loaded = tuple(loaded)
    if text.lstrip()[:1] in ("{", "[") and "en" in loaded:
        # A JSON record (a tool result): its keys are English and its PII fields are masked by
        # schema before this runs; identifying the language of JSON syntax costs and says nothing.
        return "en"
    n_letters, scores = _language_scores(text)
    if not scores:
        return None
    best = max(scores, key=scores.__getitem__)
    if best in loaded:
        return best
    if "en" in loaded and n_letters < _SHORT_TEXT_LETTERS and scores.get("en", 0.0) >= _SHORT_TEXT_EN_MIN:
        return "en"
    return None
