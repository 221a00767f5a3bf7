"""Evaluate the PII layer: per-entity recall and precision on labelled airline messages, latency.

Data (``evals/data/``), one JSON object per line:

* ``pii_generated.jsonl``: templated airline-support messages with labelled spans, rebuilt
  bit-for-bit by ``python -m evals.pii_eval generate`` (seeded). Card numbers pass Luhn,
  IBANs carry correct check digits, phone numbers are valid for their country.
* ``pii_handwritten.jsonl``: hand-written messages in markup, ``[[LABEL|value]]`` marks a
  span (edit these by hand; the spans are derived from the markup when loading).
* ``pii_negatives.jsonl``: messages without PII, full of airline identifiers, dates,
  times, amounts and the cue words ("security code", "passport", "born") without values.
* ``pii_multilingual.jsonl`` and ``pii_multilingual_dev.jsonl``: hand-written messages in
  en/de/es/fr/it/pt (``lang``), with and without PII; the cues and filters were tuned on them.
* ``pii_heldout_multilingual.jsonl``: 97 hand-written messages in the same six languages,
  held out: never used to tune. The first 65 were written before the changes they measure
  (two of their failures, a Portuguese passport cue and "Gatwick North", were seen before the
  fixes for those kinds were written on the tuning set); the 32 of ``source``
  ``heldout_multilingual_batch2`` were written last and scored once. Their failures are
  reported, not fixed. Per language: PERSON / date-of-birth recall, PII precision and the
  share of benign messages altered.

Scoring: a gold span counts as found when a prediction of the same type overlaps it
(``US_PASSPORT`` counts as ``PASSPORT``); a prediction is correct when it overlaps a gold
span of its type. "masked" also counts overlaps by any type (what matters for privacy) and
"covered" requires every character of the value to be masked. Airline identifiers
(reservation ids, flight numbers, airport codes, payment ids, user ids) found in the texts
must stay unmasked.

Latency: ``PiiLayer.check`` with an in-memory vault (the Postgres vault adds one round trip
per new value), after warm-up, on every message and on the 25-35-word ones.

Usage::

    python -m evals.pii_eval generate   # rewrite the generated data files
    python -m evals.pii_eval            # evaluate, print tables, write evals/reports/pii.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodes.guards.pii import SUPPORTED_ENTITIES

__all__ = [
    "MULTILINGUAL_SPLITS",
    "Record",
    "by_language",
    "evaluate",
    "generate",
    "load_records",
    "main",
    "non_english_summary",
    "parse_markup",
]

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "evals" / "data"
REPORT_PATH = ROOT / "evals" / "reports" / "pii.json"
SHARED_BENIGN = ROOT.parent / "shared" / "data" / "benign"
SEED = 20240517

# The eval labels every passport format as PASSPORT, so the US-specific type is folded in.
LABELS = tuple(entity for entity in SUPPORTED_ENTITIES if entity != "US_PASSPORT")
TARGETS = {
    "CREDIT_CARD": 0.98,
    "EMAIL_ADDRESS": 0.98,
    "PHONE_NUMBER": 0.98,
    "US_SSN": 0.98,
    "IBAN_CODE": 0.98,
    "PERSON": 0.85,
}
_CANONICAL = {"US_PASSPORT": "PASSPORT"}
_MARK_RE = re.compile(r"\[\[([A-Z_]+)\|(.+?)\]\]")
_IDENTIFIER_RE = re.compile(
    r"\b(?:credit_card|gift_card|certificate)_\d+\b|\b[a-z]+(?:_[a-z]+)+_\d+\b"
    r"|\b(?=[A-Z0-9]{6}\b)[0-9]*[A-Z][A-Z0-9]*\b|\bHAT\d{3}\b|\b[A-Z]{3}\b"
)


# -- records ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GoldSpan:
    """A labelled value in a record."""

    start: int
    end: int
    label: str


@dataclass(frozen=True, slots=True)
class Record:
    """One evaluation message."""

    id: str
    text: str
    spans: tuple[GoldSpan, ...]
    source: str
    kind: str = "positive"
    split: str = "dev"
    lang: str = "en"


def parse_markup(markup: str) -> tuple[str, list[GoldSpan]]:
    """Turn ``"call [[PHONE_NUMBER|415-555-0134]]"`` into text and gold spans."""
    out: list[str] = []
    spans: list[GoldSpan] = []
    cursor = 0
    length = 0
    for match in _MARK_RE.finditer(markup):
        before = markup[cursor : match.start()]
        out.append(before)
        length += len(before)
        label, value = match.group(1), match.group(2)
        if label not in LABELS:
            raise ValueError(f"unknown label {label!r} in {markup!r}")
        spans.append(GoldSpan(length, length + len(value), label))
        out.append(value)
        length += len(value)
        cursor = match.end()
    out.append(markup[cursor:])
    return "".join(out), spans


def load_records(data_dir: Path = DATA_DIR) -> list[Record]:
    """Load every ``pii_*.jsonl`` file of ``data_dir``."""
    records: list[Record] = []
    for path in sorted(data_dir.glob("pii_*.jsonl")):
        for line_no, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            if "markup" in obj:
                text, spans = parse_markup(obj["markup"])
            else:
                text = obj["text"]
                spans = [GoldSpan(s["start"], s["end"], s["label"]) for s in obj.get("spans", [])]
            for span in spans:
                if not (0 <= span.start < span.end <= len(text)) or span.label not in LABELS:
                    raise ValueError(f"{path.name}:{line_no}: bad span {span}")
            records.append(
                Record(
                    id=str(obj.get("id", f"{path.stem}-{line_no}")),
                    text=text,
                    spans=tuple(spans),
                    source=obj.get("source", path.stem),
                    kind="negative" if not spans else "positive",
                    split=str(obj.get("split", "dev")),
                    lang=str(obj.get("lang", "en")),
                )
            )
    return records


# -- generation -----------------------------------------------------------------------

FIRST_NAMES = """
Maria James Aarav Wei Fatima Olga Kwame Yuki Chiara Mohammed Siobhán Zoë Björn Ngozi Jean-Luc
Thanh Priya Hiroshi Anna Mehmet Lucas Emily Sofia Omar Ingrid Dmitri Leilani Tariq Camille
Javier Amara Raj Mei Ahmed Elena Kofi Hana Ravi Isabella Noah Liam Ava Sven Aisha Diego Nadia
Pavel Ines Yusuf Sakura Matteo Freya Arjun Lina Mateo Zara Tomasz Olivia Daniel Grace Ethan
Chloe Kenji Ana Bogdan Femi Laila Rohan Astrid Joaquín Malak Tobias Ewa Haruto Nour Sebastián
""".split()
LAST_NAMES = """
Gonzalez Smith Sharma Zhang Al-Sayed Petrova Mensah Tanaka Rossi Haddad O'Brien Müller
Lindqvist Okafor Moreau Nguyen Patel Sato Kowalska Yılmaz Oliveira Clark Hernandez Farouk
Johansson Ivanov Kahale Jameel Dubois García Adeyemi Kapoor Li Hassan Popescu Boateng Kim Iyer
Rodríguez Williams Brown Chen Andersson Abdullah Fernández Novak Kovalenko Silva Takahashi
Bianchi Eriksen Reddy Khalil Ruiz Malik Wiśniewski Thompson Walker Schneider Jensen Alvarez
Nakamura Mahmoud Costa Lefebvre Horvat Ozturk Banerjee Mwangi
""".split()
AIRPORTS = "JFK LAX SFO ORD ATL DFW SEA BOS MIA DEN PHX IAH EWR LGA MSP DTW PHL CLT LAS MCO".split()
CITIES = (
    "Boston",
    "Chicago",
    "New York",
    "San Francisco",
    "Seattle",
    "Miami",
    "Denver",
    "Atlanta",
    "Dallas",
    "Houston",
    "Phoenix",
    "Las Vegas",
    "Philadelphia",
    "Detroit",
    "Charlotte",
    "Orlando",
    "Los Angeles",
    "Minneapolis",
    "Newark",
    "Austin",
)
EMAIL_DOMAINS = (
    "gmail.com",
    "yahoo.co.uk",
    "outlook.com",
    "proton.me",
    "acme-corp.io",
    "stanford.edu",
    "web.de",
    "hotmail.fr",
    "icloud.com",
    "fastmail.com",
    "example.org",
    "mail.co.jp",
    "company.com.au",
    "uni-hamburg.de",
)
ASCII = str.maketrans(
    {
        "ü": "u",
        "ö": "o",
        "ë": "e",
        "é": "e",
        "á": "a",
        "í": "i",
        "ó": "o",
        "ñ": "n",
        "ś": "s",
        "ı": "i",
        "'": "",
        "-": "",
        "ú": "u",
    }
)


class Gen:
    """Seeded value generators; every value is returned as markup."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    # airline (not PII)
    def res(self) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        while True:
            value = "".join(self.r.choice(alphabet) for _ in range(6))
            if any(c.isalpha() for c in value):
                return value

    def flight(self) -> str:
        return f"HAT{self.r.randint(1, 299):03d}"

    def airport(self) -> str:
        return self.r.choice(AIRPORTS)

    def city(self) -> str:
        return self.r.choice(CITIES)

    def user_id(self) -> str:
        first = self.r.choice(FIRST_NAMES).lower().translate(ASCII)
        last = self.r.choice(LAST_NAMES).lower().translate(ASCII)
        return f"{first}_{last}_{self.r.randint(1000, 9999)}"

    def pay_id(self) -> str:
        kind = self.r.choice(("credit_card", "gift_card", "certificate"))
        return f"{kind}_{self.r.randint(1000000, 9999999)}"

    def travel_date(self) -> str:
        day = self.r.randint(1, 28)
        month = self.r.choice(("May", "June", "July"))
        return self.r.choice(
            (
                f"2024-05-{day:02d}",
                f"{month} {day}",
                f"05/{day:02d}/2024",
                f"{day}th of {month}",
                f"{month} {day}, 2024",
            )
        )

    def amount(self) -> str:
        return self.r.choice(
            (
                f"${self.r.randint(50, 2500)}",
                f"${self.r.randint(50, 999)}.{self.r.randint(0, 99):02d}",
                f"USD {self.r.randint(100, 1500)}",
                f"{self.r.randint(1, 9)},{self.r.randint(100, 999)} miles",
            )
        )

    def time(self) -> str:
        return self.r.choice(
            (
                f"{self.r.randint(5, 11)}:{self.r.choice(('00', '15', '30', '45'))} am",
                f"{self.r.randint(13, 23)}:{self.r.choice(('05', '20', '35', '50'))}",
            )
        )

    # PII
    def first(self) -> str:
        return f"[[PERSON|{self.r.choice(FIRST_NAMES)}]]"

    def name(self) -> str:
        return f"[[PERSON|{self._name()}]]"

    def _name(self) -> str:
        return f"{self.r.choice(FIRST_NAMES)} {self.r.choice(LAST_NAMES)}"

    def email(self) -> str:
        first = self.r.choice(FIRST_NAMES).lower().translate(ASCII)
        last = self.r.choice(LAST_NAMES).lower().translate(ASCII)
        local = self.r.choice(
            (
                f"{first}.{last}",
                f"{first}{last}{self.r.randint(1, 99)}",
                f"{first[0]}{last}",
                f"{first}_{last}",
                f"{first}.{last}+travel",
                f"{last}.{first}{self.r.randint(1980, 2005)}",
            )
        )
        return f"[[EMAIL_ADDRESS|{local}@{self.r.choice(EMAIL_DOMAINS)}]]"

    @staticmethod
    def _luhn_complete(prefix: str, length: int, r: random.Random) -> str:
        digits = prefix + "".join(str(r.randint(0, 9)) for _ in range(length - len(prefix) - 1))
        total = 0
        for i, ch in enumerate(reversed(digits)):
            d = int(ch)
            if i % 2 == 0:
                d *= 2
                d -= 9 if d > 9 else 0
            total += d
        return digits + str((10 - total % 10) % 10)

    def card(self) -> str:
        brand = self.r.choice(
            ("visa", "visa", "visa", "mc", "mc", "mc2", "amex", "discover", "jcb", "diners")
        )
        prefix, length = {
            "visa": ("4", 16),
            "mc": (str(self.r.randint(51, 55)), 16),
            "mc2": (str(self.r.randint(2221, 2720)), 16),
            "amex": (self.r.choice(("34", "37")), 15),
            "discover": (self.r.choice(("6011", "65")), 16),
            "jcb": (str(self.r.randint(3528, 3589)), 16),
            "diners": (self.r.choice(("36", "38")), 14),
        }[brand]
        number = self._luhn_complete(prefix, length, self.r)
        groups = {16: (4, 4, 4, 4), 15: (4, 6, 5), 14: (4, 6, 4)}[length]
        sep = self.r.choice((" ", " ", "-", ""))
        parts, i = [], 0
        for g in groups:
            parts.append(number[i : i + g])
            i += g
        return f"[[CREDIT_CARD|{sep.join(parts)}]]"

    def cvv(self) -> str:
        return f"[[CARD_CVV|{self.r.randint(100, 999)}]]"

    def exp(self) -> str:
        month, year = self.r.randint(1, 12), self.r.randint(25, 31)
        return (
            "[[CARD_EXPIRY|"
            + self.r.choice(
                (f"{month:02d}/{year}", f"{month}/{year}", f"{month:02d}/20{year}", f"{month:02d}-{year}")
            )
            + "]]"
        )

    def phone(self) -> str:
        import phonenumbers

        region = self.r.choice(
            (
                "US",
                "US",
                "US",
                "US",
                "CA",
                "GB",
                "GB",
                "DE",
                "FR",
                "IN",
                "BR",
                "JP",
                "AU",
                "ES",
                "IT",
                "MX",
                "CN",
                "AE",
                "NG",
                "ZA",
                "SG",
                "IE",
                "NL",
                "KR",
            )
        )
        kind = self.r.choice((phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE))
        example = phonenumbers.example_number_for_type(region, kind)
        assert example is not None, region
        national = phonenumbers.national_significant_number(example)
        for _ in range(200):
            digits = national[:-4] + "".join(str(self.r.randint(0, 9)) for _ in range(4))
            if region in ("US", "CA"):
                digits = (
                    self.r.choice(
                        ("212", "415", "646", "312", "305", "617", "206", "512", "702", "404", "604", "416")
                    )
                    + str(self.r.randint(2, 9))
                    + "".join(str(self.r.randint(0, 9)) for _ in range(6))
                )
            number = phonenumbers.parse("+" + str(example.country_code) + digits)
            if phonenumbers.is_valid_number(number):
                break
        else:
            raise RuntimeError(f"no valid {region} number generated")
        fmt = phonenumbers.PhoneNumberFormat
        if region in ("US", "CA"):
            text = self.r.choice(
                (
                    phonenumbers.format_number(number, fmt.NATIONAL),
                    phonenumbers.format_number(number, fmt.INTERNATIONAL),
                    f"{digits[:3]}-{digits[3:6]}-{digits[6:]}",
                    f"{digits[:3]}.{digits[3:6]}.{digits[6:]}",
                    f"+1 ({digits[:3]}) {digits[3:6]}-{digits[6:]}",
                    f"1-{digits[:3]}-{digits[3:6]}-{digits[6:]}",
                    phonenumbers.format_number(number, fmt.E164),
                )
            )
        elif region in ("GB", "DE", "FR", "IN", "BR") and self.r.random() < 0.3:
            text = phonenumbers.format_number(number, fmt.NATIONAL)
        else:
            text = self.r.choice(
                (
                    phonenumbers.format_number(number, fmt.INTERNATIONAL),
                    phonenumbers.format_number(number, fmt.INTERNATIONAL),
                    phonenumbers.format_number(number, fmt.E164),
                )
            )
        return f"[[PHONE_NUMBER|{text}]]"

    def ssn(self) -> str:
        area = self.r.choice([a for a in range(1, 900) if a != 666])
        group, serial = self.r.randint(1, 99), self.r.randint(1, 9999)
        sep = self.r.choice(("-", "-", "-", " ", ""))
        return f"[[US_SSN|{area:03d}{sep}{group:02d}{sep}{serial:04d}]]"

    def iban(self) -> str:
        r = self.r

        def digits(n: int) -> str:
            return "".join(str(r.randint(0, 9)) for _ in range(n))

        def letters(n: int) -> str:
            return "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(n))

        country, bban = r.choice(
            (
                ("DE", digits(18)),
                ("GB", letters(4) + digits(14)),
                ("FR", digits(23)),
                ("ES", digits(20)),
                ("NL", letters(4) + digits(10)),
                ("IT", letters(1) + digits(22)),
                ("CH", digits(17)),
                ("BE", digits(12)),
                ("IE", letters(4) + digits(14)),
            )
        )
        numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
        iban = f"{country}{98 - int(numeric) % 97:02d}{bban}"
        if r.random() < 0.6:
            iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
        return f"[[IBAN_CODE|{iban}]]"

    def passport(self) -> str:
        r = self.r

        def d(n: int) -> str:
            return "".join(str(r.randint(0, 9)) for _ in range(n))

        def a(n: int) -> str:
            return "".join(r.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(n))

        value = r.choice(
            (
                d(9),
                a(1) + d(8),
                a(2) + d(6),
                a(1) + d(7),
                f"C{d(2)}{a(1)}{d(2)}{a(1)}{d(2)}",
                d(2) + a(2) + d(5),
                "E" + d(8),
                a(2) + d(7),
                a(1) + d(7),
            )
        )
        return f"[[PASSPORT|{value}]]"

    def dob(self) -> str:
        r = self.r
        year, month, day = r.randint(1940, 2012), r.randint(1, 12), r.randint(1, 28)
        months = (
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        )
        mname = months[month - 1]
        value = r.choice(
            (
                f"{year}-{month:02d}-{day:02d}",
                f"{month:02d}/{day:02d}/{year}",
                f"{day:02d}.{month:02d}.{year}",
                f"{mname} {day}, {year}",
                f"{day} {mname} {year}",
                f"{mname[:3]} {day} {year}",
                f"{day}/{month}/{year}",
            )
        )
        return f"[[DATE_OF_BIRTH|{value}]]"

    def ip(self) -> str:
        r = self.r
        first = r.choice((203, 198, 192, 81, 62, 100))
        return f"[[IP_ADDRESS|{first}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}]]"


# Each template is used several times with fresh values. {x} slots call Gen.x(); a
# trailing digit ({airport2}) just draws another value.
POSITIVE_TEMPLATES = (
    "Hi, my name is {name}. I'd like to change reservation {res} to the {travel_date} flight from "
    "{airport} to {airport2}.",
    "Please charge the change fee to my Visa {card}, expiry {exp}, CVV {cvv}. The booking is {res}.",
    "You can reach me at {email} or on {phone} if anything changes with flight {flight} on {travel_date}.",
    "This is {name}, booking {res}. My phone number is {phone}, please text me the new itinerary.",
    "For the refund of {amount} please send it to my bank account, IBAN {iban}, account holder {name}.",
    "I need to add a passenger to {res}: {name}, date of birth {dob}, passport number {passport}.",
    "The agent asked for my SSN for the PreCheck problem on {res}, it's {ssn}. Can you fix my known "
    "traveler info?",
    "Can you update the email on my profile {user_id} to {email}? The old one no longer works.",
    "Card number {card} exp {exp} security code {cvv}, please use it for the upgrade on {res} "
    "instead of {pay_id}.",
    "My daughter {name} was born on {dob}, does she still count as a child for the {airport} to "
    "{airport2} flight?",
    "Hello, {name} here. I was charged twice for {res}, my card is {card}. Please refund one of the charges.",
    "Please send the receipt for {res} to {email} and cc my assistant at {email2}.",
    "I'm stuck at {airport}, flight {flight} got cancelled. Call me back at {phone} as soon as possible!",
    "Passenger details for {res}: {name}, DOB {dob}; {name2}, DOB {dob2}. Both in economy.",
    "My passport is {passport} and it expires next year, please update it on booking {res}.",
    "Social security number {ssn}, name {name}. I was told I need it for the travel credit form.",
    "Wire the compensation to IBAN {iban} please. Reference: {res}, flight {flight}.",
    "Hey it's {first}, I booked {res} with my {pay_id} but want to switch to my new card {card}.",
    "Can you call my husband {name} on {phone}? He's meeting me at {airport} and his phone is off.",
    "Our login keeps failing from IP {ip}, can you unlock account {user_id}? My email is {email}.",
    "The reservation is under the name {name}. Confirmation {res}, flying {travel_date}.",
    "I want to book {flight} for me and my friend {name}. Her birthday is {dob} and her email is {email}.",
    "My US passport number is {passport}, issued last year. I fly {airport} to {airport2} on {travel_date}.",
    "Use card {card}, it expires {exp}, the code on the back is {cvv}, for the {amount} fare difference.",
    "Name: {name}\nEmail: {email}\nPhone: {phone}\nBooking: {res}",
    "Hi there. {name} speaking. I need a wheelchair at {airport} for flight {flight}. Mobile {phone}.",
    "For the visa letter I need to give: full name {name}, passport {passport}, date of birth {dob}.",
    "Refund to my card please: {card} (exp {exp}). Reservation {res}, amount {amount}.",
    "I'd like to add my SSN {ssn} to my profile {user_id} for the frequent flyer tax form.",
    "Please transfer the voucher value to my account, IBAN {iban}. I'm {name}.",
    "Contact for the group booking {res}: {name}, {email}, {phone}.",
    "My email changed from {email} to {email2}, please update reservation {res}.",
    "Traveling with my son {first}, born {dob}. Do we need his passport {passport} at check-in in {city}?",
    "We met at the gate. Tell {name} that I left my bag at {airport}; my number is {phone}.",
    "The passenger name on {res} is misspelled, it should be {name}, not what is printed.",
    "Text me at {phone} when HAT{n3} boards, I'm at the lounge in {city}.",
    "Hi, {first} {last_only} here, booking {res}. Can I get an aisle seat?",
    "My card {card} was declined for {res} but my bank says it's fine. CVV {cvv}, exp {exp}.",
    "Please add {name} (passport {passport}) and {name2} (passport {passport2}) to booking {res}.",
    "I'm {name} and my date of birth is {dob}. I can't log in to {user_id}.",
    "Call me on {phone} or my office line {phone2}, I'm available after {time}.",
    "Send the invoice to [[EMAIL_ADDRESS|billing@{domain}]] and copy {email} please. Booking {res}, "
    "{amount}.",
    "Hello, my SSN is {ssn} and my name is {name}, I need a copy of my 1099 for the miles.",
    "Rebook {res} onto the {time} flight and send the confirmation to {email}. Thanks, {first}.",
    "I paid with my Mastercard {card}, can you refund to IBAN {iban} instead? It's my new bank.",
)

NEGATIVE_TEMPLATES = (
    "I need to change reservation {res}, the flight {flight} from {airport} to {airport2} on "
    "{travel_date}. My user id is {user_id}.",
    "Please use {pay_id} to pay the {amount} difference for {res}.",
    "Can I get a refund for {res}? I paid with my credit card ending in {last4}.",
    "My flight {flight} departs at {time} from gate B{n2}, is it on time?",
    "I have {n1} checked bags and I'm a gold member, how much will it cost on {res}?",
    "Cancel {res} please, it was booked on {travel_date} and I bought travel insurance.",
    "What is the status of {flight} on {travel_date}? It was supposed to leave {city} at {time}.",
    "The total was {amount}, can you split it between {pay_id} and {pay_id2}?",
    "Upgrade me to business class on {res}, I have {n5} miles and the fare shows {amount}.",
    "My e-ticket number is 016{n10} and the date on it is wrong, it should be {travel_date}.",
    "I'd like to fly from {city} to {city2} on {travel_date}, economy, two adults and one child.",
    "The fare went from {amount} to {amount2} overnight, why? Booking {res}, user {user_id}.",
    "My passport expires next year, do I need a visa to fly from {airport} to {airport2}?",
    "The security code on your website doesn't work, the page says error {n3}. I'm trying to pay for {res}.",
    "I was born in {city} but live in {city2} now. Does that matter for flight {flight}?",
    "Seat {n2}C on {flight} is broken, can you move me to row {n2b}? Reservation {res}.",
    "Which terminal does {flight} leave from at {airport}? Boarding is at {time}.",
    "Please use the gift card {pay_id} first and then {pay_id2} for the rest of {amount}.",
    "Is {res} refundable? I booked it {n1} days ago for {travel_date}.",
    "My zip code is {zip} if you need it for the billing address on {pay_id}.",
    "Flight {flight} on {travel_date} was delayed {n1} hours, I want compensation for {res}.",
    "Can you add 2 bags to {res}? User id {user_id}, pay with {pay_id}.",
    "I'm flying {airport}-{airport2}-{airport3} on {travel_date}, can I change the second leg only?",
    "Call center told me to cite case {n7} for the refund of {res}.",
    "Expires when? The voucher {pay_id} says valid thru the end of the year.",
)


def _fill(template: str, gen: Gen) -> str:
    def repl(match: re.Match[str]) -> str:
        slot = match.group(1)
        number = re.fullmatch(r"n(\d+)[a-z]?", slot)
        if number:  # {n3}: a 3-digit number
            width = int(number.group(1))
            return str(gen.r.randint(10 ** (width - 1), 10**width - 1))
        if slot == "last4":
            return f"{gen.r.randint(1000, 9999)}"
        if slot == "zip":
            return f"{gen.r.randint(10000, 99999)}"
        if slot == "domain":
            return gen.r.choice(EMAIL_DOMAINS)
        if slot == "last_only":
            return f"[[PERSON|{gen.r.choice(LAST_NAMES)}]]"
        value: str = getattr(gen, re.sub(r"\d+$", "", slot))()
        return value

    return re.sub(r"\{([a-z_0-9]+)\}", repl, template)


def _merge_adjacent_person(markup: str) -> str:
    # "{first} {last_only}" yields two PERSON marks; label the full name as one span.
    return re.sub(r"\[\[PERSON\|([^\]]+)\]\] \[\[PERSON\|([^\]]+)\]\]", r"[[PERSON|\1 \2]]", markup)


def generate(
    data_dir: Path = DATA_DIR, *, seed: int = SEED, per_template: int = 7, negatives_per_template: int = 5
) -> dict[str, int]:
    """Write ``pii_generated.jsonl`` and ``pii_negatives.jsonl`` deterministically."""
    gen = Gen(seed)
    positives, negatives = [], []
    for t_index, template in enumerate(POSITIVE_TEMPLATES):
        for k in range(per_template):
            markup = _merge_adjacent_person(_fill(template, gen))
            text, spans = parse_markup(markup)
            positives.append(
                {
                    "id": f"gen-{t_index:02d}-{k}",
                    "text": text,
                    "spans": [{"start": s.start, "end": s.end, "label": s.label} for s in spans],
                    "source": f"template:{t_index}",
                }
            )
    for t_index, template in enumerate(NEGATIVE_TEMPLATES):
        for k in range(negatives_per_template):
            markup = _fill(template, gen)
            text, spans = parse_markup(markup)
            assert not spans, markup
            negatives.append(
                {
                    "id": f"neg-{t_index:02d}-{k}",
                    "text": text,
                    "spans": [],
                    "source": f"negative-template:{t_index}",
                }
            )
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in (("pii_generated.jsonl", positives), ("pii_negatives.jsonl", negatives)):
        with (data_dir / name).open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"pii_generated.jsonl": len(positives), "pii_negatives.jsonl": len(negatives)}


# -- evaluation -----------------------------------------------------------------------


def _overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return a_start < b_end and b_start < a_end


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def evaluate(
    records: Sequence[Record],
    *,
    score_threshold: float | None = None,
    ner: str = "auto",
    ner_window: int | None = None,
    language: str = "auto",
    allow: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Score the detector on ``records``; return per-label counts, metrics and errors.

    ``allow`` defaults to the airline policy's PII allow-list (what the deployed layer uses).
    """
    from nodes.guards import pii

    allow = policy_allow_list() if allow is None else allow

    threshold = pii.DEFAULT_SCORE_THRESHOLD if score_threshold is None else score_threshold
    window = pii.DEFAULT_NER_WINDOW if ner_window is None else ner_window
    gold_n: Counter[str] = Counter()
    found: Counter[str] = Counter()
    masked: Counter[str] = Counter()
    covered: Counter[str] = Counter()
    pred_n: Counter[str] = Counter()
    pred_ok: Counter[str] = Counter()
    neg_fp: Counter[str] = Counter()
    neg_msgs_flagged = 0
    identifiers = identifiers_masked = 0
    misses: list[dict[str, Any]] = []
    false_positives: list[dict[str, Any]] = []
    for record in records:
        spans = pii.detect(
            record.text,
            score_threshold=threshold,
            ner=ner,  # type: ignore[arg-type]
            ner_window=window,
            language=language,
            allow=allow,
        )
        preds = [(s.start, s.end, _CANONICAL.get(s.entity_type, s.entity_type)) for s in spans]
        for gold in record.spans:
            gold_n[gold.label] += 1
            same = [p for p in preds if p[2] == gold.label and _overlaps(p[0], p[1], gold.start, gold.end)]
            anyp = [p for p in preds if _overlaps(p[0], p[1], gold.start, gold.end)]
            if same:
                found[gold.label] += 1
            if anyp:
                masked[gold.label] += 1
                chars: set[int] = set()
                for p in anyp:
                    chars.update(range(max(p[0], gold.start), min(p[1], gold.end)))
                if len(chars) == gold.end - gold.start:
                    covered[gold.label] += 1
            if not same:
                misses.append(
                    {
                        "id": record.id,
                        "label": gold.label,
                        "value": record.text[gold.start : gold.end],
                        "predicted_as": sorted({p[2] for p in anyp}),
                        "text": record.text,
                    }
                )
        for p in preds:
            pred_n[p[2]] += 1
            if any(g.label == p[2] and _overlaps(p[0], p[1], g.start, g.end) for g in record.spans):
                pred_ok[p[2]] += 1
            else:
                false_positives.append(
                    {"id": record.id, "label": p[2], "value": record.text[p[0] : p[1]], "text": record.text}
                )
                if record.kind == "negative":
                    neg_fp[p[2]] += 1
        if record.kind == "negative" and preds:
            neg_msgs_flagged += 1
        for ident in _IDENTIFIER_RE.finditer(record.text):
            if any(_overlaps(ident.start(), ident.end(), g.start, g.end) for g in record.spans):
                continue
            identifiers += 1
            if any(_overlaps(ident.start(), ident.end(), p[0], p[1]) for p in preds):
                identifiers_masked += 1
                false_positives.append(
                    {"id": record.id, "label": "IDENTIFIER", "value": ident.group(), "text": record.text}
                )
    per_label: dict[str, dict[str, Any]] = {}
    for label in LABELS:
        n = gold_n[label]
        per_label[label] = {
            "gold": n,
            "found": found[label],
            "recall": round(found[label] / n, 4) if n else None,
            "masked_any_type": round(masked[label] / n, 4) if n else None,
            "fully_covered": round(covered[label] / n, 4) if n else None,
            "predicted": pred_n[label],
            "precision": round(pred_ok[label] / pred_n[label], 4) if pred_n[label] else None,
            "target_recall": TARGETS.get(label),
        }
    total_gold = sum(gold_n.values())
    total_pred = sum(pred_n.values())
    negatives = sum(1 for r in records if r.kind == "negative")
    return {
        "settings": {"score_threshold": threshold, "ner": ner, "ner_window": window, "language": language},
        "records": len(records),
        "positive_records": len(records) - negatives,
        "negative_records": negatives,
        "per_label": per_label,
        "micro": {
            "recall": round(sum(found.values()) / total_gold, 4) if total_gold else None,
            "precision": round(sum(pred_ok.values()) / total_pred, 4) if total_pred else None,
            "masked_any_type": round(sum(masked.values()) / total_gold, 4) if total_gold else None,
        },
        "negatives": {
            "messages_with_a_mask": neg_msgs_flagged,
            "message_false_positive_rate": round(neg_msgs_flagged / negatives, 4) if negatives else None,
            "false_positives_by_label": dict(sorted(neg_fp.items())),
        },
        "airline_identifiers": {"seen": identifiers, "masked": identifiers_masked},
        "misses": misses,
        "false_positives": false_positives,
    }


def policy_allow_list() -> list[str]:
    """Return the ``allow`` terms of the airline policy's input ``pii`` layer (none if absent)."""
    import yaml

    path = ROOT / "tools" / "airline" / "policy.yaml"
    if not path.exists():
        return []
    doc = yaml.safe_load(path.read_text("utf-8")) or {}
    for layer in (doc.get("guards") or {}).get("input") or []:
        if layer.get("layer") == "pii":
            return [str(t) for t in (layer.get("params") or {}).get("allow") or []]
    return []


def by_language(records: Sequence[Record], **kwargs: Any) -> dict[str, Any]:
    """Per language: PERSON / DATE_OF_BIRTH recall, PII precision, benign messages altered."""
    out: dict[str, Any] = {}
    for lang in sorted({r.lang for r in records}):
        subset = [r for r in records if r.lang == lang]
        res = evaluate(subset, **kwargs)
        rows = res["per_label"]
        out[lang] = {
            "messages": len(subset),
            "with_pii": res["positive_records"],
            "benign": res["negative_records"],
            "benign_altered": res["negatives"]["messages_with_a_mask"],
            "benign_altered_rate": res["negatives"]["message_false_positive_rate"],
            "person_recall": rows["PERSON"]["recall"],
            "dob_recall": rows["DATE_OF_BIRTH"]["recall"],
            "pii_recall": res["micro"]["recall"],
            "pii_precision": res["micro"]["precision"],
            "structured_recall": _structured_recall(rows),
            "misses": res["misses"],
            "false_positives": res["false_positives"],
        }
    return out


_STRUCTURED = ("CREDIT_CARD", "CARD_CVV", "CARD_EXPIRY", "EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN",
               "IBAN_CODE", "IP_ADDRESS", "PASSPORT")


def _structured_recall(rows: dict[str, dict[str, Any]]) -> float | None:
    gold = sum(rows[k]["gold"] for k in _STRUCTURED)
    return round(sum(rows[k]["found"] for k in _STRUCTURED) / gold, 4) if gold else None


#: Splits scored per language, and what each is for. Only the held-out one measures the layer:
#: the other two were read while the cues and filters were written.
MULTILINGUAL_SPLITS = {
    "multilingual": "tuning data",
    "multilingual_dev": "tuning data",
    "heldout_multilingual": "held out: never used to tune",
}


def non_english_summary(table: dict[str, Any]) -> dict[str, Any]:
    """Sum the non-English rows of a :func:`by_language` table: benign altered, PII precision."""
    rows = [row for lang, row in table.items() if lang != "en"]
    benign = sum(row["benign"] for row in rows)
    altered = sum(row["benign_altered"] for row in rows)
    return {
        "benign": benign,
        "benign_altered": altered,
        "benign_altered_rate": round(altered / benign, 4) if benign else None,
    }


def print_languages(table: dict[str, Any], out: Any = sys.stdout) -> None:
    """Print the per-language table of :func:`by_language`."""
    print(
        f"{'lang':<6}{'msgs':>6}{'benign':>8}{'altered':>9}{'altered%':>10}{'PERSON%':>9}{'DOB%':>7}"
        f"{'struct%':>9}{'precision%':>12}",
        file=out,
    )
    for lang, row in table.items():
        print(
            f"{lang:<6}{row['messages']:>6}{row['benign']:>8}{row['benign_altered']:>9}"
            f"{_fmt(row['benign_altered_rate']):>10}{_fmt(row['person_recall']):>9}{_fmt(row['dob_recall']):>7}"
            f"{_fmt(row['structured_recall']):>9}{_fmt(row['pii_precision']):>12}",
            file=out,
        )
    summary = non_english_summary(table)
    print(
        f"non-English benign messages altered: {summary['benign_altered']}/{summary['benign']}"
        f" ({_fmt(summary['benign_altered_rate']).strip()}%)",
        file=out,
    )


def benign_flag_rates(limit: int) -> dict[str, Any]:
    """Mask rate on real airline user turns (unlabelled; τ-bench turns do contain names and DOBs)."""
    from nodes.guards import pii

    out: dict[str, Any] = {}
    for name in ("taubench_airline_user_turns.jsonl", "sgd_flights_user_turns.jsonl"):
        path = SHARED_BENIGN / name
        if not path.exists():
            continue
        texts = [json.loads(line)["text"] for line in path.read_text("utf-8").splitlines() if line.strip()]
        texts = random.Random(SEED).sample(texts, min(limit, len(texts)))
        by_label: Counter[str] = Counter()
        flagged = 0
        for text in texts:
            spans = pii.detect(text)
            if spans:
                flagged += 1
            by_label.update(_CANONICAL.get(s.entity_type, s.entity_type) for s in spans)
        out[name] = {
            "messages": len(texts),
            "messages_with_a_mask": flagged,
            "masks_per_100_messages": {
                k: round(100 * v / len(texts), 2) for k, v in sorted(by_label.items())
            },
        }
    return out


def thirty_word_messages(records: Sequence[Record]) -> list[str]:
    """Build one 30-word message per record: the record, continued by another, cut at 30 words."""
    texts = []
    for i, record in enumerate(records):
        words = (record.text + " " + records[(i * 7 + 3) % len(records)].text).split()
        while len(words) < 30:
            words += records[(i + len(words)) % len(records)].text.split()
        texts.append(" ".join(words[:30]))
    return texts


def _summary(values: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": round(_percentile(values, 0.5), 3),
        "p95_ms": round(_percentile(values, 0.95), 3),
        "p99_ms": round(_percentile(values, 0.99), 3),
        "mean_ms": round(statistics.fmean(values), 3),
    }


def _taubench_turns() -> list[str]:
    path = SHARED_BENIGN / "taubench_airline_user_turns.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["text"] for line in path.read_text("utf-8").splitlines() if line.strip()]


def measure_latency(
    records: Sequence[Record], *, repeats: int = 5, vault_factory: Any = None
) -> dict[str, Any]:
    """Time ``PiiLayer.check`` per message after warm-up (wall clock and thread CPU time).

    Groups: the evaluation messages as they are; the 30-word messages of
    :func:`thirty_word_messages` (split by whether NER ran and whether PII was found);
    the real tau-bench airline user turns when ``../shared/data`` is present. CPU time
    is what the layer costs; wall time also includes waiting for a core on a busy host.
    ``vault_factory(i)`` returns the vault for call ``i`` (default: a new in-memory vault).
    """
    import gc

    from nodes.guards.base import GuardContext
    from nodes.guards.pii import PiiLayer, warm_up
    from nodes.guards.vault import InMemoryVault

    make_vault = vault_factory or (lambda i: InMemoryVault(thread_id=f"bench-{i}"))
    warm_up()
    layer = PiiLayer()
    texts = {"eval_messages": [r.text for r in records], "words_30": thirty_word_messages(records)}
    turns = _taubench_turns()
    if turns:
        texts["taubench_turns"] = turns
    for text in texts["words_30"][:50]:
        layer.check(text, GuardContext())
    wall: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    gc.collect()
    counter = 0
    for _ in range(repeats):
        for group, items in texts.items():
            for text in items:
                counter += 1
                ctx = GuardContext(thread_id="bench", vault=make_vault(counter))
                cpu_start = time.thread_time()
                started = time.perf_counter()
                result = layer.check(text, ctx)
                elapsed = (time.perf_counter() - started) * 1000.0
                cpu_ms = (time.thread_time() - cpu_start) * 1000.0
                keys = [group, f"{group}:ner_{result.metadata.get('ner', '?')}"]
                if group == "words_30":
                    keys.append(f"{group}:{'no_pii' if result.action.value == 'allow' else 'with_pii'}")
                for key in keys:
                    wall[key].append(elapsed)
                    cpu[key].append(cpu_ms)
    return {
        "repeats": repeats,
        "wall_ms": {k: _summary(v) for k, v in sorted(wall.items())},
        "cpu_ms": {k: _summary(v) for k, v in sorted(cpu.items())},
    }


def measure_postgres_vault_latency(records: Sequence[Record], admin_url: str, repeats: int) -> dict[str, Any]:
    """Same as :func:`measure_latency` with the Postgres vault, in a scratch database.

    Every message gets a new thread, so every value found is an INSERT: the worst case.
    """
    import os
    import uuid

    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    from nodes.guards.vault import VaultStore

    name = f"airlock_pii_eval_{uuid.uuid4().hex[:8]}"
    admin = make_conninfo(admin_url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_conninfo(admin_url, dbname=name)
        with psycopg.connect(url, autocommit=True) as conn:
            migration = (ROOT / "graph" / "migrations" / "003_vault.sql").read_text("utf-8")
            conn.execute(migration, prepare=False)
        pool = ConnectionPool(
            url,
            min_size=2,
            max_size=2,
            open=True,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        )
        try:
            store = VaultStore(pool=pool, key=os.urandom(32))
            result = measure_latency(
                records, repeats=repeats, vault_factory=lambda i: store.for_thread(f"bench-{i}")
            )
        finally:
            pool.close()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    return result


def _fmt(value: float | None) -> str:
    return "  -   " if value is None else f"{100 * value:6.1f}"


def print_table(result: dict[str, Any], out: Any = sys.stdout) -> None:
    """Print the per-label table."""
    print(
        f"{'entity':<15}{'gold':>6}{'recall%':>9}{'masked%':>9}{'covered%':>10}{'pred':>6}"
        f"{'precision%':>12}{'target%':>9}",
        file=out,
    )
    for label, row in result["per_label"].items():
        if not row["gold"] and not row["predicted"]:
            continue
        target = row["target_recall"]
        flag = (
            "" if target is None or row["recall"] is None or row["recall"] >= target else "  <-- below target"
        )
        print(
            f"{label:<15}{row['gold']:>6}{_fmt(row['recall']):>9}{_fmt(row['masked_any_type']):>9}"
            f"{_fmt(row['fully_covered']):>10}{row['predicted']:>6}{_fmt(row['precision']):>12}"
            f"{'' if target is None else f'{100 * target:.0f}':>9}{flag}",
            file=out,
        )
    micro = result["micro"]
    print(
        f"{'micro':<15}{'':>6}{_fmt(micro['recall']):>9}{_fmt(micro['masked_any_type']):>9}{'':>10}{'':>6}"
        f"{_fmt(micro['precision']):>12}",
        file=out,
    )
    neg = result["negatives"]
    ids = result["airline_identifiers"]
    print(
        f"negatives: {neg['messages_with_a_mask']}/{result['negative_records']} messages with a mask "
        f"{neg['false_positives_by_label']}; airline identifiers masked: {ids['masked']}/{ids['seen']}",
        file=out,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI."""
    parser = argparse.ArgumentParser(prog="python -m evals.pii_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="run", choices=("run", "generate"))
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--report", type=Path, default=REPORT_PATH)
    parser.add_argument(
        "--threshold", type=float, default=None, help="score threshold (default: the layer's)"
    )
    parser.add_argument("--ner", choices=("auto", "always", "never"), default="auto")
    parser.add_argument("--ner-window", type=int, default=None)
    parser.add_argument("--sweep", action="store_true", help="also compare thresholds and NER modes")
    parser.add_argument("--benign-limit", type=int, default=1500, help="0 skips the benign-corpus flag rates")
    parser.add_argument("--latency-repeats", type=int, default=5, help="0 skips latency")
    parser.add_argument("--show-errors", type=int, default=15)
    parser.add_argument(
        "--postgres-url",
        default=None,
        help="also time the layer with the Postgres vault (a scratch database is created and dropped)",
    )
    args = parser.parse_args(argv)

    if args.command == "generate":
        counts = generate(args.data_dir)
        print(json.dumps(counts))
        return 0

    records = load_records(args.data_dir)
    started = time.perf_counter()
    result = evaluate(records, score_threshold=args.threshold, ner=args.ner, ner_window=args.ner_window)
    result["eval_seconds"] = round(time.perf_counter() - started, 2)
    print(
        f"{len(records)} records ({result['positive_records']} with PII, "
        f"{result['negative_records']} without)"
    )
    print_table(result)
    for kind in ("misses", "false_positives"):
        items = result[kind]
        if items and args.show_errors:
            print(f"\n{kind} ({len(items)}):")
            for item in items[: args.show_errors]:
                extra = f" as {item['predicted_as']}" if item.get("predicted_as") else ""
                print(f"  [{item['label']}] {item['value']!r}{extra}  <- {item['text'][:110]!r}")
    by_split: dict[str, Any] = {}
    for split in sorted({r.split for r in records}):
        subset = [r for r in records if r.split == split]
        by_split[split] = evaluate(
            subset, score_threshold=args.threshold, ner=args.ner, ner_window=args.ner_window
        )
        print(f"\nsplit {split!r}: {len(subset)} records")
        print_table(by_split[split])
    languages: dict[str, Any] = {}
    for split in MULTILINGUAL_SPLITS:
        subset = [r for r in records if r.split == split]
        if not subset:
            continue
        for mode in ("auto", "en"):
            # "en": the previous behaviour (English NER on every message), for comparison.
            table = by_language(
                subset, score_threshold=args.threshold, ner=args.ner, ner_window=args.ner_window,
                language=mode,
            )
            languages.setdefault(split, {})[mode] = {"by_language": table, "non_english": non_english_summary(table)}
            print(f"\nsplit {split!r} per language (language={mode!r}; {MULTILINGUAL_SPLITS[split]}):")
            print_languages(table)
        for lang, row in languages[split]["auto"]["by_language"].items():
            for kind in ("misses", "false_positives"):
                for item in row[kind][: args.show_errors]:
                    print(f"  {lang} {kind[:-2]} [{item['label']}] {item['value']!r}  <- {item['text'][:90]!r}")
    report: dict[str, Any] = {
        "description": "PII layer (nodes/guards/pii.py) on evals/data/pii_*.jsonl; see evals/pii_eval.py",
        "allow_list": policy_allow_list(),
        "multilingual_by_language": languages,
        "command": "python -m evals.pii_eval",
        "data_files": sorted(p.name for p in args.data_dir.glob("pii_*.jsonl")),
        "labels": Counter(s.label for r in records for s in r.spans),
        "result": result,
        "by_split": {
            k: {kk: vv for kk, vv in v.items() if kk not in ("misses", "false_positives")}
            for k, v in by_split.items()
        },
    }
    if args.sweep:
        sweep = []
        for ner in ("auto", "always"):
            for threshold in (0.3, 0.4, 0.5, 0.6):
                res = evaluate(records, score_threshold=threshold, ner=ner, ner_window=args.ner_window)
                sweep.append(
                    {
                        "ner": ner,
                        "threshold": threshold,
                        "micro": res["micro"],
                        "recall": {k: v["recall"] for k, v in res["per_label"].items()},
                        "precision": {k: v["precision"] for k, v in res["per_label"].items()},
                        "negative_fp_rate": res["negatives"]["message_false_positive_rate"],
                    }
                )
        for window in (3, 5, 8, 12):
            res = evaluate(records, score_threshold=args.threshold, ner="auto", ner_window=window)
            sweep.append(
                {
                    "ner": "auto",
                    "ner_window": window,
                    "person_recall": res["per_label"]["PERSON"]["recall"],
                    "person_precision": res["per_label"]["PERSON"]["precision"],
                }
            )
        report["sweep"] = sweep
        print("\nsweep:")
        for row in sweep:
            print("  " + json.dumps({k: v for k, v in row.items() if k not in ("recall", "precision")}))
    if args.benign_limit:
        report["benign_flag_rates"] = benign_flag_rates(args.benign_limit)
        print("\nbenign corpora (unlabelled):", json.dumps(report["benign_flag_rates"]))
    if args.latency_repeats:
        latency = measure_latency(records, repeats=args.latency_repeats)
        latency["vault"] = "InMemoryVault (layer cost only)"
        latency["cpu"] = _cpu_name()
        latency["python"] = platform.python_version()
        report["latency"] = latency
        _print_latency("latency of PiiLayer.check, in-memory vault", latency)
    if args.postgres_url and args.latency_repeats:
        pg = measure_postgres_vault_latency(records, args.postgres_url, max(1, args.latency_repeats // 2))
        pg["vault"] = "PiiVault on Postgres, a new thread per message (every value is an INSERT)"
        report["latency_postgres_vault"] = pg
        _print_latency("latency of PiiLayer.check, Postgres vault", pg)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(
        json.dumps(report, indent=2, ensure_ascii=False, default=_json_default) + "\n", "utf-8"
    )
    print(f"\nwrote {args.report}")
    return 0


def _print_latency(title: str, latency: dict[str, Any]) -> None:
    print(f"\n{title} (ms; wall clock | thread CPU time):")
    for key, row in latency["wall_ms"].items():
        c = latency["cpu_ms"][key]
        print(
            f"  {key:<28} n={row['n']:<5} p50={row['p50_ms']:6.3f} p95={row['p95_ms']:6.3f} "
            f"p99={row['p99_ms']:6.3f} | cpu p50={c['p50_ms']:6.3f} p95={c['p95_ms']:6.3f}"
        )


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _json_default(value: Any) -> Any:
    if isinstance(value, Counter):
        return dict(value)
    if isinstance(value, Iterable):
        return list(value)
    raise TypeError(type(value).__name__)


if __name__ == "__main__":
    raise SystemExit(main())
