"""Decide which words may be names and which identifiers stay visible: generic lists plus the served domain's.

The word lists (openers, non-names, stop words of the languages customers write in, demonyms)
and the served domain's allowances (``DomainPlugin.pii``: identifiers, places, words taken for
names) that the NER gate, the recognisers and the resolution of the PII layer
(:mod:`nodes.guards.pii`) read. :func:`use_allowances` rebinds the domain-dependent names
(``_PLACES``, ``_COMMON_OPENERS``, ``_NOT_NAME_WORDS``, ...): other modules read them as
``pii_words._PLACES`` at call time, never import them by name.
"""

from __future__ import annotations

import re

from spacy.lang.de.stop_words import STOP_WORDS as DE_STOP_WORDS
from spacy.lang.en.stop_words import STOP_WORDS
from spacy.lang.es.stop_words import STOP_WORDS as ES_STOP_WORDS
from spacy.lang.fr.stop_words import STOP_WORDS as FR_STOP_WORDS
from spacy.lang.it.stop_words import STOP_WORDS as IT_STOP_WORDS
from spacy.lang.nl.stop_words import STOP_WORDS as NL_STOP_WORDS
from spacy.lang.pt.stop_words import STOP_WORDS as PT_STOP_WORDS

from graph.domain import PiiAllowances

__all__ = ["allowances", "use_allowances"]


# -- identifiers that must stay visible ---------------------------------------------------

# Our own placeholders are never PII; a domain's identifiers are added by :func:`use_allowances`.
_PLACEHOLDER_SHAPE = r"<[A-Z][A-Z0-9_]*_[0-9]+>"
# An all-caps word that is an identifier, not a name: it has a digit (a domain adds its codes).
_GENERIC_CAPS_ID = r"[A-Z0-9]*\d[A-Z0-9]*"


# -- words that are not names -----------------------------------------------------------

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

_TRIM_LEADING = _COMMON_OPENERS | _NOT_NAME_WORDS


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


# -- the served domain's allowances ---------------------------------------------------------

_GENERIC_COMMON_OPENERS = _COMMON_OPENERS
_GENERIC_NOT_NAME_WORDS = _NOT_NAME_WORDS
#: Bumped by :func:`use_allowances`: what the recognisers and the resolution treat as a
#: domain identifier changed, so earlier analyses no longer apply.
_ALLOWANCES_GENERATION = 0


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
