"""The airline's offline rule-based planner: a chat model that drives the airline demo without an LLM.

:class:`OfflinePlanner` reads the conversation (system prompt, user turns, its own earlier tool
calls and the JSON tool results) and writes either ONE real tool call or a plain-text answer.
It keeps no state between calls: everything it needs is derived from the messages, so a graph
can be resumed in another process and the planner carries on where it stopped.

It is deliberately a naive, literal agent. It does not enforce the airline policy itself (basic
economy changes, cancellation windows, compensation eligibility ...): those are the job of the
deterministic guardrails around the tools, and a planner that pre-filtered them would hide the
guardrails from the demo. When a guardrail denies a call, the user declines at the confirm gate,
or the resilience layer returns its fallback, the planner says so plainly and never retries.

Intent parsing uses small regular expressions over whitespace-normalised text. Every pattern is a
bounded alternation of literals (no nested or adjacent unbounded quantifiers), so matching is
linear in the input length; inputs are also truncated to :data:`MAX_TEXT_CHARS`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache
from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from graph.errors import AirlockError
from nodes.model.offline import MAX_TEXT_CHARS, OfflinePlanner
from tools.airline.prompt import TRANSFER_MESSAGE

__all__ = [
    "GREETING_MESSAGE",
    "HELP_MESSAGE",
    "POLICY_SUMMARIES",
    "TRANSFER_MESSAGE",
    "WRITE_TOOLS",
    "AirlinePlanner",
]

WRITE_TOOLS = frozenset(
    {
        "book_reservation",
        "cancel_reservation",
        "update_reservation_flights",
        "update_reservation_baggages",
        "update_reservation_passengers",
        "send_certificate",
    }
)

HELP_MESSAGE = (
    "I am the offline airline assistant (a rule-based planner, no LLM). I can:\n"
    "- show a reservation: \"show me reservation ABC123\"\n"
    "- list your reservations: \"list my reservations\"\n"
    "- book a one-way flight: \"book a flight from JFK to SEA on 2024-05-20 in economy\"\n"
    "- change flights or cabin: \"change reservation ABC123 to flight HAT141 on 2024-05-22\", "
    "\"move my flight in reservation ABC123 to May 22\", \"switch reservation ABC123 to business\"\n"
    "- add checked bags: \"add 2 checked bags to reservation ABC123\"\n"
    "- cancel: \"cancel reservation ABC123 because my plans changed\"\n"
    "- compensation for a cancelled or delayed flight: "
    "\"my flight was cancelled, I want compensation for reservation ABC123\"\n"
    "- answer questions about baggage, cancellation, changes, compensation and insurance\n"
    "- transfer you to a human agent: \"I want to talk to a human\"\n"
    "I recognise the main requests in Spanish, French, German, Portuguese and Italian too, but I "
    "answer in English. What would you like to do?"
)
GREETING_MESSAGE = (
    "Hello! I am the airline's assistant. I can show, change or cancel your reservations, add "
    "checked bags, book a flight, look into compensation for a cancelled or delayed flight, answer "
    "policy questions, or transfer you to a human agent. What can I do for you?"
)

POLICY_SUMMARIES: Mapping[str, str] = {
    "baggage": (
        "Free checked bags per passenger (basic economy / economy / business): regular members "
        "0/1/2, silver members 1/2/3, gold members 2/3/4. Each extra bag costs USD 50. Bags can "
        "be added to an existing reservation but not removed."
    ),
    "cancellation": (
        "A reservation can be cancelled if it was booked within the last 24 hours, if the "
        "airline cancelled a flight, if it is in business class, or if it has travel insurance "
        "and the reason is covered (health or weather). If any part of the trip has already "
        "been flown it cannot be cancelled here and you will be transferred to a human agent. "
        "Refunds go back to the original payment methods within 5 to 7 business days."
    ),
    "change": (
        "Basic economy flights cannot be changed. Other reservations can change flights as "
        "long as the origin, destination and trip type stay the same. Any reservation, "
        "including basic economy, can change cabin if no flight has been flown yet; the cabin "
        "applies to every flight. A price difference is charged to, or refunded to, one credit "
        "card or gift card from your profile. Passengers can be updated but their number "
        "cannot change."
    ),
    "compensation": (
        "Compensation is given only on request, and only to silver or gold members, to "
        "reservations with travel insurance, or to business-class travellers. For a flight "
        "cancelled by the airline: a travel certificate of USD 100 per passenger. For a delayed "
        "flight, after the reservation has been changed or cancelled: USD 50 per passenger."
    ),
    "insurance": (
        "Travel insurance costs USD 30 per passenger and can only be bought when booking; it "
        "cannot be added later. It gives a full refund if you cancel for health or weather "
        "reasons."
    ),
}

# Free checked bags per passenger, from policy.md.
_ALLOWANCE: Mapping[str, Mapping[str, int]] = {
    "regular": {"basic_economy": 0, "economy": 1, "business": 2},
    "silver": {"basic_economy": 1, "economy": 2, "business": 3},
    "gold": {"basic_economy": 2, "economy": 3, "business": 4},
}

# --------------------------------------------------------------------------------------------
# Text parsing. All patterns run on whitespace-normalised text (runs of whitespace -> one space)
# so no pattern needs an unbounded whitespace quantifier.
# --------------------------------------------------------------------------------------------

_WS = re.compile(r"\s+")
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]{0,63}>")

# The main request words in Spanish, French, German, Portuguese and Italian, read as their
# English equivalents before the intent patterns run ("cancelar mi reserva ZKTY6N" is "cancel
# mi reservation ZKTY6N"). A bounded alternation of literals, matched on word boundaries.
_FOREIGN_WORDS: Mapping[str, str] = {
    **dict.fromkeys(("cancelar", "cancela", "cancele", "cancelen", "annuler", "annulez", "annule",
                     "stornieren", "storniere", "stornierung", "cancellare", "cancella", "cancelli",
                     "annullare", "annulla"), "cancel"),
    **dict.fromkeys(("reserva", "réservation", "buchung", "reservierung", "prenotazione"),
                    "reservation"),
    **dict.fromkeys(("reservas", "réservations", "buchungen", "reservierungen", "prenotazioni"),
                    "reservations"),
    **dict.fromkeys(("maleta", "maletas", "equipaje", "valija", "valijas", "bagage", "bagages",
                     "valise", "valises", "gepäck", "gepäckstück", "gepäckstücke", "koffer",
                     "bagaglio", "bagagli", "valigia", "valigie", "bagagem", "bagagens"), "bags"),
    **dict.fromkeys(("añadir", "agregar", "ajouter", "hinzufügen", "aggiungere", "adicionar"), "add"),
    **dict.fromkeys(("cambiar", "modificar", "changer", "modifier", "ändern", "umbuchen", "cambiare",
                     "modificare", "mudar", "alterar", "trocar"), "change"),
    **dict.fromkeys(("mostrar", "muéstrame", "muestrame", "afficher", "montrer", "montrez", "zeigen",
                     "anzeigen", "zeige", "mostra", "mostrami", "mostrare", "ver", "voir"), "show"),
    **dict.fromkeys(("humano", "humain", "mensch", "menschen", "umano", "operatore", "conseiller",
                     "mitarbeiter", "atendente"), "human"),
    **dict.fromkeys(("hola", "buenas", "bonjour", "salut", "hallo", "ciao", "buongiorno", "olá",
                     "oi"), "hello"),
    **dict.fromkeys(("gracias", "merci", "danke", "grazie", "obrigado", "obrigada"), "thanks"),
    **dict.fromkeys(("compensación", "compensacion", "indemnización", "indemnizacion",
                     "indemnisation", "dédommagement", "entschädigung", "risarcimento",
                     "compensação", "indenização"), "compensation"),
    **dict.fromkeys(("cancelado", "cancelada", "annulé", "annulée", "annulliert", "storniert",
                     "cancellato", "cancellata"), "cancelled"),
    **dict.fromkeys(("retrasado", "retrasada", "retardé", "retardée", "verspätet", "atrasado",
                     "atrasada", "ritardo"), "delayed"),
    **dict.fromkeys(("reservar", "réserver", "buchen", "prenotare"), "book"),
    **dict.fromkeys(("vuelo", "vol", "flug", "volo", "voo"), "flight"),
    **dict.fromkeys(("política", "politique", "richtlinie", "politica", "regras", "reglas"), "policy"),
    **dict.fromkeys(("cuántas", "cuántos", "cuantas", "cuantos", "combien", "quante", "quanti",
                     "quantas", "quantos"), "how many"),
    **dict.fromkeys(("dos", "deux", "zwei", "dois"), "two"),
    # Italian "due" only before a bag word: alone it is an English word too ("due to").
    **dict.fromkeys(("due bagagli", "due valigie"), "two bags"),
    **dict.fromkeys(("tres", "trois", "drei", "tre", "três"), "three"),
    **dict.fromkeys(("planes", "projets", "pläne", "piani", "planos"), "plans"),
    **dict.fromkeys(("cambiaron", "changé", "geändert", "cambiati", "mudaram"), "changed"),
}
_FOREIGN = re.compile(
    r"\b(?:" + "|".join(sorted(map(re.escape, _FOREIGN_WORDS), key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)
_SIGNED_IN = re.compile(r"^[ \t]*Signed-in customer:[ \t]*([A-Za-z0-9_.@-]{1,80})", re.MULTILINE)
_USER_ID = re.compile(r"\b([a-z]{1,30}_[a-z]{1,30}_\d{1,8})\b", re.IGNORECASE)
_PAYMENT_PREFIX = re.compile(r"^(?:credit_card|gift_card)_", re.IGNORECASE)
_FLIGHT_NO = re.compile(r"\b(HAT\d{3})\b", re.IGNORECASE)
_FLIGHT_NO_FULL = re.compile(r"HAT\d{3}")
_RES_CONTEXT = re.compile(
    r"\b(?:reservation|booking|confirmation|pnr|locator)(?: (?:id|number|code|no|nr))?\.?"
    r"(?: is)?:? ?#?([A-Za-z0-9]{6})\b",
    re.IGNORECASE,
)
_RES_TOKEN = re.compile(r"\b([A-Za-z0-9]{6})\b")
_HAS_DIGIT = re.compile(r"\d")
_HAS_ALPHA = re.compile(r"[A-Za-z]")
_ORDINAL_TOKEN = re.compile(r"\d{1,4}(?:st|nd|rd|th|am|pm|kg|lb)", re.IGNORECASE)

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# Full spellings only ("maybe 2 bags" must not read as May 2).
_MONTH_ALT = (
    "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    "sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_ISO_DATE = re.compile(r"\b(20\d\d)-(\d{1,2})-(\d{1,2})\b")
_MONTH_DAY = re.compile(
    rf"\b({_MONTH_ALT})\.? (\d{{1,2}})(?:st|nd|rd|th)?(?:,? (20\d\d))?\b",
    re.IGNORECASE,
)
_DAY_MONTH = re.compile(
    rf"\b(\d{{1,2}})(?:st|nd|rd|th)? (?:of )?({_MONTH_ALT})\b\.?(?:,? (20\d\d))?\b",
    re.IGNORECASE,
)
_SLASH_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})(?:/(20\d\d))?\b")
_DEFAULT_YEAR = 2024  # the simulated τ-bench clock is 2024-05-15

_CABIN_TARGET = re.compile(
    r"\b(?:to|into) (?:the |a )?(basic[ _-]?economy|economy|business)\b", re.IGNORECASE
)
_CABIN_ANY = re.compile(r"\b(basic[ _-]?economy|economy|business)\b", re.IGNORECASE)

_NUMBER_WORDS: Mapping[str, int] = {
    "a": 1,
    "an": 1,
    "one": 1,
    "another": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
_NUM_ALT = r"\d{1,2}|an?|one|another|two|three|four|five|six|seven|eight|nine|ten"
_BAG_NOUN = r"(?:bags?|baggages?|luggages?|suitcases?)"
_BAG_COUNT = re.compile(
    rf"\b({_NUM_ALT}) (?:(?:more|extra|additional|new) )?(?:checked )?{_BAG_NOUN}\b",
    re.IGNORECASE,
)
_BAG_WORD = re.compile(rf"\b{_BAG_NOUN}\b", re.IGNORECASE)
_BARE_NUMBER = re.compile(
    r"^(?:just |only )?(\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten)"
    r"(?: please)?[.!]?$",
    re.IGNORECASE,
)

_PAYMENT_ID = re.compile(r"\b((?:credit_card|gift_card|certificate)_\d{1,12})\b", re.IGNORECASE)
_GIFT_CARD = re.compile(r"\bgift ?cards?\b", re.IGNORECASE)
_CREDIT_CARD = re.compile(
    r"\b(?:credit ?cards?|debit cards?|visa|mastercard|amex|american express|discover)\b",
    re.IGNORECASE,
)
_LAST_FOUR = re.compile(r"\b(?:ending|ends) (?:in |with )?(\d{4})\b", re.IGNORECASE)

_HUMAN = re.compile(
    r"\b(?:human|humans|real person|live person|live agent|real agent|representative|"
    r"supervisor|manager|operator)\b"
)
_TALK_TO = re.compile(
    r"\b(?:talk|speak|chat|transfer|connect)(?:ed|ing)? (?:me )?(?:to|with) "
    r"(?:an? |some |the |your )?(?:agent|person|someone|somebody|staff|employee)\b"
)
_COMPENSATION = re.compile(r"\b(?:compensat\w*|vouchers?|reimburs\w*|make up for|make it up)\b")
_CERTIFICATE_WORD = re.compile(r"\bcertificates?\b")
_PAY_WITH_CERT = re.compile(r"\b(?:pay|paying|use|using|with) (?:my |a |the )?(?:travel )?certif")
_COMPLAINT = re.compile(r"\b(?:delay\w*|cancel+ed)\b")
_CANCEL_VERB = re.compile(r"\b(?:cancel|cancell?ing)\b")
_CHANGE_VERB = re.compile(
    r"\b(?:change|changing|move|moving|switch|switching|rebook|rebooking|reschedule|"
    r"rescheduling|modify|modifying|upgrade|upgrading|downgrade|downgrading|swap|postpone)\b"
)
_CHANGE_OF_PLAN = re.compile(r"\bchange of plans?\b")
_ADD_VERB = re.compile(
    r"\b(?:add|adding|need|want|bring|buy|purchase|get|include|extra|more|additional)\b"
)
_LIST_NOUN = re.compile(r"\b(?:reservations|bookings|trips)\b")
_SHOW_WORD = re.compile(
    r"\b(?:show|see|view|look ?up|lookup|details?|what'?s in|what is in|check|find|"
    r"tell me about|info|information|status|display|pull up|review|reservation|booking)\b"
)
_BOOK = re.compile(
    r"\b(?:book|reserve|new reservation|new booking|buy (?:a |an )?(?:plane )?(?:ticket|flight))\b"
)
_ROUTE_FROM = re.compile(r"\bfrom ([A-Za-z]{3}) (?:to|-) ([A-Za-z]{3})\b", re.IGNORECASE)
_ROUTE_CODES = re.compile(r"\b([A-Z]{3}) ?(?:-|->|→|to) ?([A-Z]{3})\b")
_WITH_INSURANCE = re.compile(r"\bwith (?:travel )?insurance\b")
_GREETING = re.compile(r"^(?:hi|hello|hey|good (?:morning|afternoon|evening)|help)\b")
_THANKS = re.compile(r"\b(?:thanks|thank you|thx|cheers)\b")
_POLICY_WORD = re.compile(
    r"\b(?:policy|policies|rules?|allowance|allowed|allow|free|fees?|costs?|charged?|"
    r"how many|how much|can i|could i|am i|may i|do i|eligible|eligibility|entitled|"
    r"qualify|what happens|refunds?|refundable|what are|what is|explain)\b"
)
_TOPIC_BAGS = _BAG_WORD
_TOPIC_CANCEL = re.compile(r"\bcancel\w*")
_TOPIC_CHANGE = re.compile(r"\b(?:chang\w*|modif\w*|rebook\w*|reschedul\w*|upgrad\w*|cabin)")
_TOPIC_COMPENSATION = re.compile(r"\b(?:compensat\w*|vouchers?|certificates?|delay\w*)")
_TOPIC_INSURANCE = re.compile(r"\binsur\w*")
_TOPIC_GENERIC = re.compile(r"\b(?:policy|policies|rules)\b")
_REFUND = re.compile(r"\brefund\w*")

_REASON_AIRLINE = re.compile(
    r"\b(?:airline cancel\w*|cancel+ed by (?:the )?airline|"
    r"(?:flight|it) (?:was |got |has been |had been |is )?cancel+ed|(?:you|they) cancel+ed)"
)
_REASON_HEALTH = re.compile(
    r"\b(?:sick|ill|illness|health|medical|hospital\w*|injur\w*|surgery|doctor|"
    r"pregnan\w*|covid|flu)\b"
)
_REASON_WEATHER = re.compile(
    r"\b(?:weather|storms?|hurricane|snow\w*|blizzard|flood\w*|typhoon|tornado)\b"
)
_REASON_PLAN = re.compile(
    r"\b(?:change of plans?|plans? (?:have |has )?changed|changed my (?:mind|plans?)|"
    r"no longer|don'?t need|can'?t (?:make it|go|travel)|not (?:going|travel\w*))"
)
_REASON_OTHER = re.compile(
    r"^other\b|\bother reasons?\b|\bpersonal\b|\bsomething else\b|\bbecause\b"
)

_HINT_RETURN = re.compile(
    r"\b(?:return|returning|inbound|way back|coming back|back flight|second flight|second leg)\b"
)
_HINT_OUTBOUND = re.compile(r"\b(?:outbound|departing|first flight|first leg|outgoing)\b")
_PRONOUN = re.compile(r"\b(?:it|that|this|same|the (?:reservation|booking|trip))\b")

# Tool-result classification.
_TXT_DECLINED = re.compile(
    r"\b(?:declined|did not confirm|didn'?t confirm|not confirmed|confirmation (?:was )?refused)\b"
)
_TXT_DENIED = re.compile(
    r"\b(?:denied|blocked|not allowed|not permitted|forbidden|guardrail|rejected|refused)\b"
)
_TXT_FALLBACK = re.compile(r"\b(?:unavailable|try again later|try again in|circuit)\b")
_TXT_ERROR = re.compile(r"^(?:error|exception|failed|failure)\b")
_CERT_ID = re.compile(r"\bcertificate_\d{1,12}\b")

_STATUS_KEYS = ("status", "outcome", "decision", "kind")
_MESSAGE_KEYS = ("message", "reason", "detail", "error", "fallback_message", "fallbackMessage")

Intent = Literal[
    "human", "book", "compensation", "cancel", "bags", "change", "list", "show", "policy", "greeting",
    "thanks",
]
OutcomeKind = Literal["ok", "denied", "declined", "fallback", "error"]
# Status values the tool guard (and similar wrappers) use; matched on the first word, so
# "declined_by_user" and "rejected_by_reviewer" are covered.
_STATUS_VALUES: tuple[tuple[frozenset[str], OutcomeKind], ...] = (
    (frozenset({"denied", "deny", "blocked", "block", "rejected", "reject", "refused"}), "denied"),
    (frozenset({"declined", "decline", "not_confirmed", "unconfirmed", "aborted"}), "declined"),
    (frozenset({"fallback", "unavailable", "circuit_open", "degraded"}), "fallback"),
    (frozenset({"error", "failed", "failure", "invalid"}), "error"),
)
_STATUS_WORD = re.compile(r"[a-z]+")
_RECORD_KEYS = ("reservation_id", "user_id", "flights", "payment_methods")
_ANONYMOUS = frozenset({"unknown", "none", "anonymous", "null", "-"})
_FLAG_KINDS: tuple[tuple[str, OutcomeKind], ...] = (
    ("denied", "denied"),
    ("declined", "declined"),
    ("fallback", "fallback"),
)


def _normalise(text: str) -> str:
    """Return ``text`` truncated, with PII placeholders removed and whitespace collapsed."""
    text = text[:MAX_TEXT_CHARS]
    text = _PLACEHOLDER.sub(" ", text)
    return _WS.sub(" ", text).strip()


def _english(text: str) -> str:
    """Return ``text`` with the request words of other languages replaced by English ones."""
    return _FOREIGN.sub(lambda m: _FOREIGN_WORDS[m.group(0).lower()], text)


def _message_text(message: BaseMessage) -> str:
    """Return a message's text content whether it is a string or a list of blocks."""
    content = message.content
    if isinstance(content, str):
        return content
    return message.text


@dataclass(frozen=True, slots=True)
class _Parsed:
    """Everything the planner reads out of one user message."""

    intent: Intent | None = None
    topic: str | None = None
    reservation_ids: tuple[str, ...] = ()
    weak_ids: tuple[str, ...] = ()
    origin: str | None = None
    destination: str | None = None
    insurance: bool | None = None
    user_ids: tuple[str, ...] = ()
    flight_numbers: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    cabin: str | None = None
    bag_count: int | None = None
    bare_number: int | None = None
    payment_id: str | None = None
    payment_kind: str | None = None
    last_four: str | None = None
    reason: str | None = None
    hint: str | None = None
    pronoun: bool = False


def _weak_reservation_ids(text: str) -> tuple[str, ...]:
    """Return six-letter words typed after "reservation" in lower case ("reservation vaaoxj").

    They may be an id or a word ("reservation status"): the planner uses one only when it is
    among the signed-in customer's own reservations.
    """
    found = [
        m.group(1).upper()
        for m in _RES_CONTEXT.finditer(text)
        if m.group(1).isalpha() and not m.group(1).isupper()
    ]
    return tuple(dict.fromkeys(found))


def _reservation_ids(text: str) -> tuple[str, ...]:
    found: list[str] = []
    for match in _RES_CONTEXT.finditer(text):
        token = match.group(1)
        if _FLIGHT_NO_FULL.fullmatch(token.upper()):
            continue
        # After "reservation", accept an id with a digit or typed in capitals (HATHAT); a
        # lower-case word ("reservation number") is not an id.
        if _HAS_DIGIT.search(token) or token.isupper():
            found.append(token.upper())
    if found:
        return tuple(dict.fromkeys(found))
    for match in _RES_TOKEN.finditer(text):
        token = match.group(1)
        if not (_HAS_DIGIT.search(token) and _HAS_ALPHA.search(token)):
            continue
        upper = token.upper()
        if _FLIGHT_NO_FULL.fullmatch(upper) or _ORDINAL_TOKEN.fullmatch(token):
            continue
        found.append(upper)
    return tuple(dict.fromkeys(found))


def _valid_date(year: int, month: int, day: int) -> str | None:
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def _dates(text: str) -> tuple[str, ...]:
    found: list[tuple[int, str]] = []
    for m in _ISO_DATE.finditer(text):
        iso = _valid_date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if iso:
            found.append((m.start(), iso))
    for m in _MONTH_DAY.finditer(text):
        month = _MONTHS.index(m.group(1).lower()[:3]) + 1
        iso = _valid_date(int(m.group(3) or _DEFAULT_YEAR), month, int(m.group(2)))
        if iso:
            found.append((m.start(), iso))
    for m in _DAY_MONTH.finditer(text):
        month = _MONTHS.index(m.group(2).lower()[:3]) + 1
        iso = _valid_date(int(m.group(3) or _DEFAULT_YEAR), month, int(m.group(1)))
        if iso:
            found.append((m.start(), iso))
    for m in _SLASH_DATE.finditer(text):
        iso = _valid_date(int(m.group(3) or _DEFAULT_YEAR), int(m.group(1)), int(m.group(2)))
        if iso:
            found.append((m.start(), iso))
    found.sort()
    return tuple(dict.fromkeys(iso for _, iso in found))


def _cabin(text: str) -> str | None:
    match = _CABIN_TARGET.search(text) or _CABIN_ANY.search(text)
    if match is None:
        return None
    word = match.group(1).lower()
    return "basic_economy" if word.startswith("basic") else word


def _first_label(lower: str, ladder: tuple[tuple[re.Pattern[str], str], ...]) -> str | None:
    """Return the label of the first pattern in ``ladder`` found in ``lower`` (order is priority)."""
    return next((label for pattern, label in ladder if pattern.search(lower)), None)


def _reason(lower: str) -> str | None:
    return _first_label(lower, (
        (_REASON_AIRLINE, "airline cancelled flight"), (_REASON_HEALTH, "health"),
        (_REASON_WEATHER, "weather"), (_REASON_PLAN, "change of plan"), (_REASON_OTHER, "other"),
    ))


def _policy_topic(lower: str) -> str | None:
    return _first_label(lower, (
        (_TOPIC_INSURANCE, "insurance"), (_TOPIC_COMPENSATION, "compensation"), (_TOPIC_BAGS, "baggage"),
        (_TOPIC_CANCEL, "cancellation"), (_TOPIC_CHANGE, "change"), (_TOPIC_GENERIC, "overview"),
    ))


def _classify(lower: str, parsed: _Parsed) -> tuple[Intent | None, str | None]:
    """Return the intent of one message (and the policy topic for a policy question)."""
    if _HUMAN.search(lower) or _TALK_TO.search(lower):
        return "human", None
    ids = parsed.reservation_ids or parsed.weak_ids
    if _BOOK.search(lower) and not ids and not _CANCEL_VERB.search(lower):
        return "book", None
    actionable = bool(ids or parsed.flight_numbers or parsed.dates)
    policy_question = _POLICY_WORD.search(lower) is not None and not actionable
    certificate_claim = (
        _CERTIFICATE_WORD.search(lower) is not None
        and _COMPLAINT.search(lower) is not None
        and _PAY_WITH_CERT.search(lower) is None
    )
    if _COMPENSATION.search(lower) or certificate_claim:
        return ("policy", "compensation") if policy_question else ("compensation", None)
    if _CANCEL_VERB.search(lower):
        return ("policy", "cancellation") if policy_question else ("cancel", None)
    if _TOPIC_INSURANCE.search(lower) and not parsed.reservation_ids:
        return "policy", "insurance"
    if _BAG_WORD.search(lower):
        if parsed.bag_count is not None and parsed.bag_count > 0:
            return "bags", None
        if policy_question:
            return "policy", "baggage"
        if _ADD_VERB.search(lower):
            return "bags", None
    if _CHANGE_VERB.search(lower) and not _CHANGE_OF_PLAN.search(lower):
        if policy_question and parsed.cabin is None:
            return "policy", "change"
        return "change", None
    if _TOPIC_GENERIC.search(lower):
        return "policy", _policy_topic(lower) or "overview"
    if _REFUND.search(lower) and not parsed.reservation_ids:
        return "policy", "cancellation"
    if _LIST_NOUN.search(lower) and not ids:
        return "list", None
    if ids and _SHOW_WORD.search(lower):
        return "show", None
    if _THANKS.search(lower):
        return "thanks", None
    if _GREETING.search(lower):
        return "greeting", None
    return None, None


@lru_cache(maxsize=2048)
def _parse(raw: str) -> _Parsed:
    """Parse one user message (pure, cached: the planner re-reads the whole conversation)."""
    text = _english(_normalise(raw))
    lower = text.lower()
    user_ids = tuple(
        dict.fromkeys(
            m.group(1).lower()
            for m in _USER_ID.finditer(text)
            if not _PAYMENT_PREFIX.match(m.group(1))
        )
    )
    bag = _BAG_COUNT.search(lower)
    bag_count = None
    if bag:
        word = bag.group(1)
        bag_count = int(word) if word.isdigit() else _NUMBER_WORDS.get(word)
    bare = _BARE_NUMBER.match(lower)
    bare_number = None
    if bare:
        word = bare.group(1)
        bare_number = int(word) if word.isdigit() else _NUMBER_WORDS.get(word)
    payment = _PAYMENT_ID.search(text)
    last_four = _LAST_FOUR.search(lower)
    kind = None
    if _GIFT_CARD.search(lower):
        kind = "gift_card"
    elif _CREDIT_CARD.search(lower) or last_four:
        kind = "credit_card"
    route_match = _ROUTE_FROM.search(text) or _ROUTE_CODES.search(text)
    route = (route_match.group(1).upper(), route_match.group(2).upper()) if route_match else None
    hint = None
    if _HINT_RETURN.search(lower):
        hint = "return"
    elif _HINT_OUTBOUND.search(lower):
        hint = "outbound"
    parsed = _Parsed(
        reservation_ids=_reservation_ids(text),
        weak_ids=_weak_reservation_ids(text),
        origin=route[0] if route else None,
        destination=route[1] if route else None,
        insurance=True if _WITH_INSURANCE.search(lower) else None,
        user_ids=user_ids,
        flight_numbers=tuple(dict.fromkeys(m.group(1).upper() for m in _FLIGHT_NO.finditer(text))),
        dates=_dates(text),
        cabin=_cabin(text),
        bag_count=bag_count,
        bare_number=bare_number,
        payment_id=payment.group(1).lower() if payment else None,
        payment_kind=kind,
        last_four=last_four.group(1) if last_four else None,
        reason=_reason(lower),
        hint=hint,
        pronoun=_PRONOUN.search(lower) is not None,
    )
    intent, topic = _classify(lower, parsed)
    return replace(parsed, intent=intent, topic=topic)


# --------------------------------------------------------------------------------------------
# Conversation model.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A tool result, classified."""

    kind: OutcomeKind
    payload: Any  # the parsed result, unwrapped from a {"status", "result"} envelope
    message: str
    raw: Any = None  # the parsed result as returned (envelope facts such as charge ids)
    status: str = ""  # the envelope's status word, e.g. "rejected_by_reviewer"


@dataclass(frozen=True, slots=True)
class _Call:
    """One tool call the planner made earlier in the current request, with its result."""

    name: str
    args: Mapping[str, Any]
    key: str
    result: ToolMessage | None


@dataclass(slots=True)
class _Request:
    """The user's current request: intent plus slots merged over its follow-up messages."""

    intent: Intent | None
    topic: str | None = None
    reservation_id: str | None = None
    weak_ids: tuple[str, ...] = ()
    origin: str | None = None
    destination: str | None = None
    insurance: bool | None = None
    user_id: str | None = None
    flight_number: str | None = None
    date: str | None = None
    cabin: str | None = None
    bag_count: int | None = None
    payment_id: str | None = None
    payment_kind: str | None = None
    last_four: str | None = None
    reason: str | None = None
    hint: str | None = None
    text: str = ""


class _Done(AirlockError):  # noqa: N818 - control flow, not an error
    """Raised inside a step to return the planner's next message."""

    def __init__(self, message: AIMessage) -> None:
        super().__init__("planner step done")
        self.message = message


def _call_key(name: str, args: Mapping[str, Any]) -> str:
    return name + json.dumps(args, sort_keys=True, separators=(",", ":"), default=str)


def _loads(text: str) -> Any:
    stripped = text.strip()
    if stripped[:1] in ("{", "[", '"') or stripped in ("true", "false", "null"):
        try:
            return json.loads(stripped)
        except ValueError:
            return text
    return text


def _unwrap(payload: Any) -> Any:
    """Return the inner result of a ``{"status": "ok", "result": ...}`` envelope.

    The tool guard wraps non-dict results (lists, strings) this way; a dict result is returned
    as the record itself with a ``status`` key added, and is left alone.
    """
    if (
        isinstance(payload, dict)
        and "result" in payload
        and not any(key in payload for key in _RECORD_KEYS)
    ):
        return payload["result"]
    return payload


def _first_message(payload: Mapping[str, Any]) -> str:
    for key in _MESSAGE_KEYS:
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _classify_result(message: ToolMessage) -> _Outcome:
    """Classify a tool result as ok, denied, declined (confirm gate), fallback or error."""
    text = _message_text(message)
    payload = _loads(text)
    if isinstance(payload, dict):
        for key in _STATUS_KEYS:
            value = payload.get(key)
            if not isinstance(value, str):
                continue
            low = value.strip().lower()
            word = _STATUS_WORD.match(low)
            for values, kind in _STATUS_VALUES:
                if low in values or (word is not None and word.group(0) in values):
                    message_text = _first_message(payload) or text
                    return _Outcome(kind, payload, message_text, payload, low)
        for flag, kind in _FLAG_KINDS:
            if payload.get(flag) is True:
                return _Outcome(kind, payload, _first_message(payload) or text, payload)
        if payload.get("error") or payload.get("ok") is False:
            return _Outcome("error", payload, _first_message(payload) or text, payload)
        return _Outcome("ok", _unwrap(payload), "", payload)
    if isinstance(payload, str):
        low = _normalise(payload).lower()
        if _TXT_DECLINED.search(low):
            return _Outcome("declined", payload, payload.strip())
        if _TXT_DENIED.search(low):
            return _Outcome("denied", payload, payload.strip())
        if _TXT_FALLBACK.search(low):
            return _Outcome("fallback", payload, payload.strip())
        if _TXT_ERROR.search(low) or message.status == "error":
            return _Outcome("error", payload, payload.strip())
    elif message.status == "error":
        return _Outcome("error", payload, text.strip())
    return _Outcome("ok", payload, "", payload)


def _is_question(message: BaseMessage) -> bool:
    return (
        isinstance(message, AIMessage)
        and not message.tool_calls
        and _message_text(message).rstrip().endswith("?")
    )


def _money(amount: Any) -> str:
    try:
        value = float(amount)
    except (TypeError, ValueError):
        return f"USD {amount}"
    return f"USD {value:,.0f}" if value == int(value) else f"USD {value:,.2f}"



class _Turn:
    """One planner invocation: reads the messages and decides the next message."""

    def __init__(self, messages: Sequence[BaseMessage], bound_tools: frozenset[str]) -> None:
        self.messages = list(messages)
        self.bound_tools = bound_tools
        self.n_calls = sum(
            len(m.tool_calls) for m in self.messages if isinstance(m, AIMessage)
        )
        self.signed_in = self._signed_in_user()
        self.request, start = self._current_request()
        self.calls = self._episode(start)

    # -- reading the conversation ------------------------------------------------------------

    def _signed_in_user(self) -> str | None:
        for message in reversed(self.messages):
            if isinstance(message, SystemMessage):
                match = _SIGNED_IN.search(_message_text(message)[:MAX_TEXT_CHARS])
                if match and match.group(1).lower() not in _ANONYMOUS:
                    return match.group(1)
        return None

    def _human_indices(self) -> list[int]:
        return [i for i, m in enumerate(self.messages) if isinstance(m, HumanMessage)]

    def _asked_before(self, human_pos: int, previous_pos: int) -> bool:
        """Return True if the user message at ``human_pos`` continues the previous request.

        That is the case when the planner's last message before it was a question, or a tool
        call it had not yet answered (the user spoke while the request was in flight).
        """
        for message in reversed(self.messages[previous_pos + 1 : human_pos]):
            if isinstance(message, AIMessage):
                return bool(message.tool_calls) or _is_question(message)
        return False

    def _current_request(self) -> tuple[_Request, int]:
        humans = self._human_indices()
        if not humans:
            return _Request(intent=None), len(self.messages)
        # The chain: the latest user message plus earlier ones it answers (each follow-up was
        # preceded by a question from the planner).
        chain = [humans[-1]]
        k = len(humans) - 1
        while k > 0 and self._asked_before(humans[k], humans[k - 1]):
            k -= 1
            chain.insert(0, humans[k])
        parsed = {i: _parse(_message_text(self.messages[i])) for i in chain}
        strong: Intent | None = None
        topic: str | None = None
        for i in reversed(chain):
            if parsed[i].intent not in (None, "greeting", "thanks"):
                strong, topic = parsed[i].intent, parsed[i].topic
                break
        # The request spans the latest messages whose intent is the active one or none.
        members: list[int] = []
        for i in reversed(chain):
            intent = parsed[i].intent
            if strong is not None and intent not in (None, strong, "greeting", "thanks"):
                break
            members.insert(0, i)
            if strong is None:
                break
        if strong is None:
            last = parsed[chain[-1]]
            strong, topic = last.intent, last.topic
            if strong is None and (last.reservation_ids or last.weak_ids):
                strong = "show"
        request = _Request(intent=strong, topic=topic)
        request.text = _normalise(_message_text(self.messages[chain[-1]]))
        for i in members:
            self._merge(request, parsed[i])
        if request.intent == "list" and request.reservation_id:
            request.intent = "show"
        if request.intent == "bags" and request.bag_count is None:
            for i in members[1:]:
                if parsed[i].bare_number is not None:
                    request.bag_count = parsed[i].bare_number
        if request.reservation_id is None and any(parsed[i].pronoun for i in members):
            request.reservation_id = self._earlier_reservation(members[0])
        request.user_id = self.signed_in or self._stated_user()
        return request, members[0]

    @staticmethod
    def _merge(request: _Request, parsed: _Parsed) -> None:
        if parsed.reservation_ids:
            request.reservation_id = parsed.reservation_ids[0]
        if parsed.weak_ids:
            request.weak_ids = parsed.weak_ids
        if parsed.flight_numbers:
            request.flight_number = parsed.flight_numbers[0]
        if parsed.dates:
            request.date = parsed.dates[0]
        for name in ("cabin", "bag_count", "payment_id", "payment_kind", "last_four", "hint", "origin",
                     "destination", "insurance"):
            value = getattr(parsed, name)
            if value is not None:
                setattr(request, name, value)
        # A more specific reason beats a bare "because ...".
        if parsed.reason is not None and (request.reason in (None, "other")):
            request.reason = parsed.reason

    def _earlier_reservation(self, before: int) -> str | None:
        for i in reversed(self._human_indices()):
            if i >= before:
                continue
            ids = _parse(_message_text(self.messages[i])).reservation_ids
            if ids:
                return ids[0]
        return None

    def _stated_user(self) -> str | None:
        for i in reversed(self._human_indices()):
            ids = _parse(_message_text(self.messages[i])).user_ids
            if ids:
                return ids[0]
        return None

    def _episode(self, start: int) -> list[_Call]:
        results: dict[str, ToolMessage] = {}
        for message in self.messages[start:]:
            if isinstance(message, ToolMessage):
                results[message.tool_call_id] = message
        calls: list[_Call] = []
        for message in self.messages[start:]:
            if isinstance(message, AIMessage):
                for tc in message.tool_calls:
                    args = tc.get("args") or {}
                    calls.append(
                        _Call(
                            name=tc["name"],
                            args=args,
                            key=_call_key(tc["name"], args),
                            result=results.get(tc.get("id") or ""),
                        )
                    )
        return calls

    # -- emitting --------------------------------------------------------------------------

    def tool_call(self, name: str, args: dict[str, Any]) -> AIMessage:
        return AIMessage(
            content="",
            tool_calls=[{"name": name, "args": args, "id": f"call_{self.n_calls}"}],
        )

    @staticmethod
    def reply(text: str) -> AIMessage:
        return AIMessage(content=text)

    def say(self, text: str) -> _Done:
        return _Done(self.reply(text))

    def has_tool(self, name: str) -> bool:
        return not self.bound_tools or name in self.bound_tools

    def need(self, name: str, args: dict[str, Any], expect: type | None = dict) -> Any:
        """Return the result of ``name(args)`` from this request, or emit the call."""
        key = _call_key(name, args)
        found = next((c for c in reversed(self.calls) if c.key == key), None)
        if found is None or found.result is None:
            raise _Done(self.tool_call(name, args))
        outcome = _classify_result(found.result)
        if outcome.kind != "ok":
            raise self.say(_failure_text(found, outcome))
        payload = outcome.payload
        if expect is not None and not isinstance(payload, expect):
            raise self.say(
                f"I'm sorry, {name} returned something I could not read: {str(payload)[:200]}"
            )
        return payload

    # -- planning --------------------------------------------------------------------------

    def plan(self) -> AIMessage:
        try:
            self._finish_if_done()
            handler: Callable[[], None] = {
                "human": self._human,
                "compensation": self._compensation,
                "cancel": self._cancel,
                "bags": self._bags,
                "change": self._change,
                "list": self._list,
                "show": self._show,
                "policy": self._policy,
                "thanks": self._thanks,
                "greeting": self._greet,
                "book": self._book,
            }.get(self.request.intent or "", self._help)
            handler()
        except _Done as done:
            return done.message
        return self.reply(HELP_MESSAGE)

    def _finish_if_done(self) -> None:
        """End the request once a write (or the transfer) has a result: never retry it."""
        for call in self.calls:
            if call.result is None:
                continue
            if call.name == "transfer_to_human_agents":
                outcome = _classify_result(call.result)
                if outcome.kind == "ok":
                    raise self.say(TRANSFER_MESSAGE)
                raise self.say(_failure_text(call, outcome))
            if call.name in WRITE_TOOLS:
                outcome = _classify_result(call.result)
                if outcome.kind != "ok":
                    raise self.say(_failure_text(call, outcome))
                # A reviewer may have edited the call: report the arguments the tool ran with.
                review = outcome.raw.get("review") if isinstance(outcome.raw, dict) else None
                if isinstance(review, dict) and isinstance(review.get("args"), dict):
                    call = replace(call, args=review["args"])
                raise self.say(_success_text(call, outcome.raw, self._before(call)))

    def _before(self, call: _Call) -> Mapping[str, Any] | None:
        rid = call.args.get("reservation_id")
        key = _call_key("get_reservation_details", {"reservation_id": rid})
        for earlier in self.calls:
            if earlier.key == key and earlier.result is not None:
                outcome = _classify_result(earlier.result)
                if outcome.kind == "ok" and isinstance(outcome.payload, dict):
                    return outcome.payload
        return None

    def _require_user(self, why: str) -> str:
        if self.request.user_id:
            return self.request.user_id
        raise self.say(f"To {why}, I need your user id. Could you tell me your user id?")

    def _require_reservation(self, verb: str, extra_question: str = "") -> str:
        if self.request.reservation_id:
            return self.request.reservation_id
        suffix = f" {extra_question}" if extra_question else ""
        if self.request.user_id and self.has_tool("get_user_details"):
            profile = self.need("get_user_details", {"user_id": self.request.user_id})
            ids = [str(r) for r in profile.get("reservations") or []]
            # A lower-case id ("reservation vaaoxj") counts when it is one of the customer's own.
            for weak in self.request.weak_ids:
                if weak in ids:
                    self.request.reservation_id = weak
                    return weak
            if not ids:
                raise self.say("I could not find any reservations in your profile.")
            raise self.say(
                f"Your reservations are: {', '.join(ids)}. Which one would you like to {verb}?"
                f"{suffix}"
            )
        # Every clarification ends with "?": that is how the next user message is read as
        # its answer (see _Turn._current_request).
        raise self.say(
            "Please tell me the reservation id (six characters, for example ABC123): which "
            f"reservation would you like to {verb}?{suffix}"
        )

    def _reservation(self, rid: str) -> dict[str, Any]:
        res: dict[str, Any] = self.need("get_reservation_details", {"reservation_id": rid})
        if not isinstance(res.get("flights"), list):
            raise self.say(f"I'm sorry, I could not read the details of reservation {rid}.")
        return res

    @staticmethod
    def _not_cancelled(res: Mapping[str, Any], rid: str, what: str) -> None:
        if str(res.get("status", "")).lower() == "cancelled":
            raise _Done(AIMessage(content=f"Reservation {rid} is already cancelled, so {what}."))

    def _payment(self, profile: Mapping[str, Any]) -> str:
        """Pick the payment method the user named, else the first credit card on file."""
        request = self.request
        if request.payment_id:
            return request.payment_id
        methods = profile.get("payment_methods") or {}
        items: list[tuple[str, Mapping[str, Any]]] = []
        if isinstance(methods, Mapping):
            items = [(str(k), v) for k, v in methods.items() if isinstance(v, Mapping)]
        elif isinstance(methods, list):
            items = [(str(v.get("id")), v) for v in methods if isinstance(v, Mapping)]

        def of(source: str) -> list[tuple[str, Mapping[str, Any]]]:
            return [(k, v) for k, v in items if str(v.get("source", k)).startswith(source)]

        cards, gifts = of("credit_card"), of("gift_card")
        if request.payment_kind == "gift_card" and gifts:
            return gifts[0][0]
        if request.last_four:
            for pid, method in cards:
                if str(method.get("last_four")) == request.last_four:
                    return pid
        if cards:
            return cards[0][0]
        if gifts:
            return gifts[0][0]
        raise self.say(
            "I could not find a credit card or gift card in your profile to use for this change."
        )

    # -- intents -----------------------------------------------------------------------------

    def _help(self) -> None:
        raise self.say(HELP_MESSAGE)

    def _thanks(self) -> None:
        raise self.say("You're welcome.")

    def _greet(self) -> None:
        raise self.say(GREETING_MESSAGE)

    def _book(self) -> None:
        """Book a one-way direct flight for the signed-in customer (one passenger: themselves)."""
        request = self.request
        uid = self._require_user("book a flight")
        if not (request.origin and request.destination):
            raise self.say(
                "From which airport to which airport would you like to fly (IATA codes, for "
                "example \"from JFK to SEA\"), and on which date?"
            )
        if not request.date:
            raise self.say(f"On which date would you like to fly from {request.origin} to "
                           f"{request.destination} (for example 2024-05-22)?")
        cabin = request.cabin or "economy"
        route = {"origin": request.origin, "destination": request.destination}
        found = self._search(route, [dict(route)], request.date)
        options = []
        for flight in found:
            number = str(flight.get("flight_number", ""))
            price = (flight.get("prices") or {}).get(cabin)
            seats = (flight.get("available_seats") or {}).get(cabin, 0)
            if price is None or seats < 1 or str(flight.get("status", "available")) != "available":
                continue
            if request.flight_number and number.upper() != request.flight_number:
                continue
            options.append((float(price), str(flight.get("scheduled_departure_time_est", "")), number))
        if not options:
            wanted = f"flight {request.flight_number}" if request.flight_number else "direct flight"
            raise self.say(
                f"There is no {wanted} from {request.origin} to {request.destination} on "
                f"{request.date} with a seat in {cabin.replace('_', ' ')}."
            )
        price, _, number = min(options)
        profile = self.need("get_user_details", {"user_id": uid})
        name = profile.get("name") if isinstance(profile.get("name"), Mapping) else {}
        passenger = {"first_name": str(name.get("first_name", "")),
                     "last_name": str(name.get("last_name", "")), "dob": str(profile.get("dob", ""))}
        insurance = "yes" if request.insurance else "no"
        total = price + (30.0 if request.insurance else 0.0)
        args = {
            "user_id": uid, "origin": request.origin, "destination": request.destination,
            "flight_type": "one_way", "cabin": cabin,
            "flights": [{"flight_number": number, "date": request.date}],
            "passengers": [passenger],
            "payment_methods": [{"payment_id": self._payment(profile), "amount": total}],
            "total_baggages": 0, "nonfree_baggages": 0, "insurance": insurance,
        }
        raise _Done(self.tool_call("book_reservation", args))

    def _policy(self) -> None:
        topic = self.request.topic or "overview"
        if topic == "overview":
            raise self.say(" ".join(POLICY_SUMMARIES.values()))
        raise self.say(POLICY_SUMMARIES.get(topic, HELP_MESSAGE))

    def _human(self) -> None:
        who = self.request.user_id or "an unidentified customer"
        summary = f"Customer {who} asked to be transferred to a human agent."
        if self.request.reservation_id:
            summary += f" Reservation: {self.request.reservation_id}."
        summary += f" Last message: {self.request.text[:300]}"
        raise _Done(self.tool_call("transfer_to_human_agents", {"summary": summary}))

    def _list(self) -> None:
        uid = self._require_user("list your reservations")
        profile = self.need("get_user_details", {"user_id": uid})
        ids = [str(r) for r in profile.get("reservations") or []]
        if not ids:
            raise self.say("You have no reservations in your profile.")
        raise self.say(
            f"You have {len(ids)} reservation{'s' if len(ids) != 1 else ''}: {', '.join(ids)}. "
            "Which one would you like to look at?"
        )

    def _show(self) -> None:
        rid = self._require_reservation("look at")
        raise self.say(_reservation_summary(self._reservation(rid), rid))

    def _cancel(self) -> None:
        # The reason is a fact only the customer can state: the system asks it itself, with
        # buttons, right before the cancellation's guardrails (tools/airline/stated.py).
        rid = self._require_reservation("cancel")
        res = self._reservation(rid)
        self._not_cancelled(res, rid, "there is nothing to cancel")
        raise _Done(self.tool_call("cancel_reservation", {"reservation_id": rid}))

    def _bags(self) -> None:
        rid = self._require_reservation("add bags to")
        count = self.request.bag_count
        if count is None:
            raise self.say(f"How many checked bags would you like to add to reservation {rid}?")
        if count <= 0:
            raise self.say("There are no bags to add.")
        res = self._reservation(rid)
        self._not_cancelled(res, rid, "bags cannot be added")
        uid = self._require_user("add bags")
        profile = self.need("get_user_details", {"user_id": uid})
        membership = str(profile.get("membership", "regular")).lower()
        cabin = str(res.get("cabin", "economy"))
        passengers = len(res.get("passengers") or []) or 1
        free = _ALLOWANCE.get(membership, _ALLOWANCE["regular"]).get(cabin, 0) * passengers
        total = int(res.get("total_baggages") or 0) + count
        args = {
            "reservation_id": rid,
            "total_baggages": total,
            "nonfree_baggages": max(0, total - free),
            "payment_id": self._payment(profile),
        }
        raise _Done(self.tool_call("update_reservation_baggages", args))

    def _change(self) -> None:
        request = self.request
        rid = self._require_reservation("change")
        if not (request.flight_number or request.date or request.cabin):
            raise self.say(
                f"What would you like to change in reservation {rid}: a new flight number and "
                "date, a new date, or the cabin (basic economy, economy or business)?"
            )
        res = self._reservation(rid)
        self._not_cancelled(res, rid, "it cannot be changed")
        uid = self._require_user("change a reservation")
        profile = self.need("get_user_details", {"user_id": uid})
        legs: list[dict[str, Any]] = [leg for leg in res["flights"] if isinstance(leg, dict)]
        current = [{"flight_number": leg["flight_number"], "date": leg["date"]} for leg in legs]
        cabin = request.cabin or str(res.get("cabin", "economy"))
        journeys = _journeys(res, legs)
        if request.flight_number or request.date:
            target, replacement = self._new_leg(res, journeys, cabin)
            new_flights: list[dict[str, Any]] = []
            for j, journey in enumerate(journeys):
                if j == target:
                    new_flights.append(replacement)
                else:
                    new_flights.extend(
                        {"flight_number": leg["flight_number"], "date": leg["date"]}
                        for leg in journey
                    )
        else:
            new_flights = current
        if new_flights == current and cabin == res.get("cabin"):
            raise self.say(f"Reservation {rid} already has these flights and this cabin.")
        args = {
            "reservation_id": rid,
            "cabin": cabin,
            "flights": new_flights,
            "payment_id": self._payment(profile),
        }
        raise _Done(self.tool_call("update_reservation_flights", args))

    def _new_leg(
        self, res: Mapping[str, Any], journeys: list[list[dict[str, Any]]], cabin: str
    ) -> tuple[int, dict[str, Any]]:
        """Return (journey index, new flight) for a flight-number or date change."""
        request = self.request
        order = list(range(len(journeys)))
        if len(journeys) > 1 and request.hint == "return":
            order = [1]
        elif len(journeys) > 1 and request.hint == "outbound":
            order = [0]
        fn = request.flight_number
        if fn:
            if len(order) == 1 and len(journeys[order[0]]) == 1:
                leg = journeys[order[0]][0]
                return order[0], {"flight_number": fn, "date": request.date or leg["date"]}
            for j in order:
                journey = journeys[j]
                day = request.date or journey[0]["date"]
                found = self._search(res, journey, day)
                if any(str(f.get("flight_number", "")).upper() == fn for f in found):
                    return j, {"flight_number": fn, "date": day}
            raise self.say(
                f"{fn} is not an available direct flight for your route on "
                f"{request.date or 'the dates of your trip'}, so I cannot move you to it."
            )
        day = request.date or ""
        journey = journeys[order[0]]
        passengers = len(res.get("passengers") or []) or 1
        unchanged = {(leg["flight_number"], leg["date"]) for leg in journey}
        options = []
        for flight in self._search(res, journey, day):
            number = str(flight.get("flight_number", ""))
            price = (flight.get("prices") or {}).get(cabin)
            seats = (flight.get("available_seats") or {}).get(cabin, 0)
            status = str(flight.get("status", "available"))
            if price is None or seats < passengers or status != "available":
                continue
            if (number, day) in unchanged:
                continue
            options.append((price, str(flight.get("scheduled_departure_time_est", "")), number))
        if not options:
            raise self.say(
                f"There is no direct flight from {_origin(journey, res)} to "
                f"{_destination(journey, res)} on {day} with {passengers} seat(s) available in "
                f"{cabin.replace('_', ' ')}."
            )
        options.sort()
        return order[0], {"flight_number": options[0][2], "date": day}

    def _search(
        self, res: Mapping[str, Any], journey: list[dict[str, Any]], day: str
    ) -> list[dict[str, Any]]:
        args = {
            "origin": _origin(journey, res),
            "destination": _destination(journey, res),
            "date": day,
        }
        found = self.need("search_direct_flight", args, expect=None)
        found = _unwrap(found)
        if isinstance(found, dict):  # {"flights": [...]} or similar
            found = next((v for v in found.values() if isinstance(v, list)), [])
        if not isinstance(found, list):
            return []
        return [f for f in found if isinstance(f, dict)]

    def _compensation(self) -> None:
        rid = self._require_reservation("get compensation for")
        res = self._reservation(rid)
        uid = self._require_user("send you a certificate")
        if not self.has_tool("get_flight_status"):
            raise self.say(
                "I cannot check flight statuses here, so I cannot verify a cancellation or delay. "
                "Ask me to transfer you to a human agent if you would like someone to review it."
            )
        statuses: list[tuple[str, str]] = []
        for leg in res["flights"]:
            status = self.need(
                "get_flight_status",
                {"flight_number": leg["flight_number"], "date": leg["date"]},
                expect=None,
            )
            if isinstance(status, dict):
                status = status.get("status", "")
            statuses.append((f"{leg['flight_number']} on {leg['date']}", str(status).lower()))
        passengers = len(res.get("passengers") or []) or 1
        if any(s == "cancelled" for _, s in statuses):
            amount = 100 * passengers
        elif any(s == "delayed" for _, s in statuses):
            amount = 50 * passengers
        else:
            listing = "; ".join(f"{f}: {s}" for f, s in statuses)
            raise self.say(
                f"None of the flights in reservation {rid} was cancelled or delayed ({listing}), "
                "so I cannot offer compensation."
            )
        raise _Done(self.tool_call("send_certificate", {"user_id": uid, "amount": amount}))


def _origin(journey: list[dict[str, Any]], res: Mapping[str, Any]) -> str:
    return str(journey[0].get("origin") or res.get("origin") or "")


def _destination(journey: list[dict[str, Any]], res: Mapping[str, Any]) -> str:
    return str(journey[-1].get("destination") or res.get("destination") or "")


def _journeys(res: Mapping[str, Any], legs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split the legs into the outbound journey and (for a round trip) the return journey."""
    destination = res.get("destination")
    if res.get("flight_type") == "round_trip" and destination:
        for i, leg in enumerate(legs):
            if leg.get("destination") == destination and i + 1 < len(legs):
                return [legs[: i + 1], legs[i + 1 :]]
    return [legs] if legs else [[]]


def _reservation_summary(res: Mapping[str, Any], rid: str) -> str:
    trip = str(res.get("flight_type", "")).replace("_", " ") or "trip"
    cabin = str(res.get("cabin", "")).replace("_", " ")
    lines = [
        f"Reservation {res.get('reservation_id', rid)}: {trip} from {res.get('origin')} to "
        f"{res.get('destination')}, {cabin} cabin."
    ]
    if str(res.get("status", "")).lower() == "cancelled":
        lines.append("Status: cancelled.")
    legs = [
        f"{leg.get('flight_number')} {leg.get('origin')} to {leg.get('destination')} "
        f"on {leg.get('date')}"
        for leg in res.get("flights") or []
        if isinstance(leg, dict)
    ]
    lines.append("Flights: " + "; ".join(legs) + ".")
    passengers = len(res.get("passengers") or [])
    lines.append(
        f"Passengers: {passengers}. Checked bags: {res.get('total_baggages', 0)} "
        f"({res.get('nonfree_baggages', 0)} paid). Travel insurance: {res.get('insurance', 'no')}."
    )
    created = str(res.get("created_at", ""))[:10]
    if created:
        lines.append(f"Booked on {created}.")
    return "\n".join(lines)


def _action(call: _Call) -> str:
    args = call.args
    rid = args.get("reservation_id", "")
    return {
        "update_reservation_flights": f"change the flights of reservation {rid}",
        "update_reservation_baggages": f"update the bags of reservation {rid}",
        "update_reservation_passengers": f"update the passengers of reservation {rid}",
        "cancel_reservation": f"cancel reservation {rid}",
        "send_certificate": f"send a {_money(args.get('amount'))} certificate",
        "book_reservation": "book the reservation",
        "transfer_to_human_agents": "transfer you to a human agent",
        "get_reservation_details": f"look up reservation {rid}",
        "get_user_details": "look up your profile",
        "search_direct_flight": f"search for flights on {args.get('date', '')}",
        "get_flight_status": f"check the status of flight {args.get('flight_number', '')}",
    }.get(call.name, f"run {call.name}")


def _failure_text(call: _Call, outcome: _Outcome) -> str:
    """Say plainly that a call did not go through; the planner will not retry it."""
    action = _action(call)
    reason = outcome.message.strip().rstrip(".")
    changed = " Nothing was changed." if call.name in WRITE_TOOLS else ""
    if outcome.kind == "declined":
        return f"You declined the confirmation, so I did not {action}.{changed}"
    if outcome.kind == "denied":
        if "review" in reason.lower() or "review" in outcome.status:
            return f"A reviewer rejected the request to {action}: {reason}.{changed}"
        return f"I could not {action}: the request was denied by a guardrail ({reason}).{changed}"
    if outcome.kind == "fallback":
        return (
            f"I could not {action} because the service is unavailable right now ({reason}).{changed}"
            " Please try again in a few minutes."
        )
    return f"I'm sorry, I could not {action}: {reason or 'the tool returned an error'}.{changed}"


def _outcome_facts(body: Mapping[str, Any], *, with_amount: bool) -> list[str]:
    """Return the status, amount and charge ids a write result reports."""
    facts: list[str] = []
    status = str(body.get("status") or "")
    deduplicated = status == "deduplicated"
    if deduplicated:
        status = str(body.get("original_status") or "")
    if status and status != "ok":
        facts.append(f"status: {status}")
    amount = body.get("amount_usd", body.get("amount"))
    if with_amount and isinstance(amount, int | float):
        direction = str(body.get("direction") or "")
        facts.append(
            f"amount: {_money(amount)}" + (f" ({direction})" if direction not in ("", "none") else "")
        )
    for key, value in body.items():
        low = key.lower()
        if not ("charge" in low or "transaction" in low or "ledger" in low):
            continue
        if isinstance(value, list) and value:
            facts.append(f"{key.replace('_', ' ')}: {', '.join(str(v) for v in value)}")
        elif isinstance(value, str | int) and value:
            facts.append(f"{key.replace('_', ' ')}: {value}")
    if deduplicated:
        facts.append("this request had already been completed, so nothing was charged twice")
    return facts


def _payments_since(record: Mapping[str, Any], before: Mapping[str, Any] | None) -> list[str]:
    """Describe the payment-history entries a write added (τ-bench records carry no totals)."""
    history = record.get("payment_history")
    if not isinstance(history, list):
        return []
    old = before.get("payment_history") if before else None
    start = len(old) if isinstance(old, list) else max(0, len(history) - 1)
    lines = []
    for entry in history[start:]:
        if not isinstance(entry, Mapping):
            continue
        amount = float(entry.get("amount") or 0)
        pid = entry.get("payment_id")
        if amount > 0:
            lines.append(f"{_money(amount)} was charged to {pid}")
        elif amount < 0:
            lines.append(f"{_money(-amount)} will be refunded to {pid}")
    return lines


def _money_sentence(
    call: _Call, body: Mapping[str, Any], record: Mapping[str, Any], before: Mapping[str, Any] | None
) -> str | None:
    """Say what was charged or refunded, or None when the result does not tell."""
    amount = body.get("amount_usd")
    direction = body.get("direction")
    pid = call.args.get("payment_id")
    if isinstance(amount, int | float) and direction in ("charge", "refund", "none"):
        if direction == "charge" and amount:
            return f"{_money(amount)} was charged to {pid}."
        if direction == "refund" and amount:
            target = pid or "the original payment methods"
            return f"{_money(amount)} will be refunded to {target}."
        return "There was nothing to pay."
    lines = _payments_since(record, before)
    return ". ".join(lines) + "." if lines else None


def _success_text(call: _Call, raw: Any, before: Mapping[str, Any] | None) -> str:
    """Summarise a successful write: what changed, the amount and the charge ids."""
    rid = call.args.get("reservation_id", "")
    body: Any = _unwrap(raw)
    if not isinstance(body, Mapping):
        body = {"result": body}
    nested = body.get("reservation")
    record: Mapping[str, Any] = nested if isinstance(nested, Mapping) else body
    money = _money_sentence(call, body, record, before)
    parts: list[str] = []
    if call.name == "update_reservation_flights":
        flights = record.get("flights")
        legs = flights if isinstance(flights, list) else call.args.get("flights") or []
        listing = "; ".join(
            f"{leg.get('flight_number')} on {leg.get('date')}"
            for leg in legs
            if isinstance(leg, Mapping)
        )
        cabin = str(call.args.get("cabin", "")).replace("_", " ")
        parts.append(f"Done: reservation {rid} now has {listing} in {cabin}.")
        parts.append(money or "There was no price difference to pay.")
    elif call.name == "update_reservation_baggages":
        parts.append(
            f"Done: reservation {rid} now has {call.args.get('total_baggages')} checked bag(s), "
            f"{call.args.get('nonfree_baggages')} of them paid."
        )
        if money is None and before is not None:
            extra = int(call.args.get("nonfree_baggages") or 0) - int(
                before.get("nonfree_baggages") or 0
            )
            money = (
                f"{_money(50 * extra)} was charged to {call.args.get('payment_id')}."
                if extra > 0
                else "There was nothing to pay."
            )
        if money:
            parts.append(money)
    elif call.name == "cancel_reservation":
        parts.append(f"Reservation {rid} is cancelled.")
        refund = body.get("amount_usd")
        if body.get("direction") == "refund" and isinstance(refund, int | float) and refund:
            parts.append(
                f"{_money(refund)} will be refunded to the original payment methods within 5 to "
                "7 business days."
            )
        else:
            if money and money != "There was nothing to pay.":
                parts.append(money)
            parts.append(
                "Refunds go back to the original payment methods within 5 to 7 business days."
            )
    elif call.name == "book_reservation":
        flights = "; ".join(
            f"{leg.get('flight_number')} on {leg.get('date')}"
            for leg in call.args.get("flights") or [] if isinstance(leg, Mapping)
        )
        booked = record.get("reservation_id") or body.get("reservation_id")
        parts.append(
            f"Done: you are booked on {flights} from {call.args.get('origin')} to "
            f"{call.args.get('destination')} in {str(call.args.get('cabin', '')).replace('_', ' ')}"
            + (f", reservation {booked}." if booked else ".")
        )
        if money:
            parts.append(money)
    elif call.name == "send_certificate":
        text = json.dumps(body, default=str)
        cert = _CERT_ID.search(text)
        parts.append(
            f"Done: a travel certificate of {_money(call.args.get('amount'))} was added to your "
            "profile" + (f" ({cert.group(0)})." if cert else ".")
        )
    else:
        parts.append(f"Done: {call.name} succeeded.")
        if money:
            parts.append(money)
    facts = _outcome_facts(body, with_amount=money is None and call.name != "send_certificate")
    if facts:
        parts.append("Details: " + "; ".join(facts) + ".")
    return " ".join(parts)


class AirlinePlanner(OfflinePlanner):
    """A rule-based stand-in for an LLM that drives the airline demo end to end.

    It emits at most one tool call per turn (``content=""``), with ids ``call_<n>`` where ``n``
    counts the tool calls already in the conversation, or a plain-text answer. It is stateless:
    the same messages always give the same reply, in any process.
    """

    def plan(self, messages: Sequence[BaseMessage]) -> AIMessage:
        """Return the next message for ``messages`` (no callbacks; used by ``_generate``).

        Args:
            messages: The whole conversation so far.

        Returns:
            An ``AIMessage`` with exactly one tool call and empty content, or a text answer.
        """
        return _Turn(messages, frozenset(self.bound_tools)).plan()
