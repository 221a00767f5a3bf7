"""Define the classifier heads: which records each one learns and how it is tuned.

Part of ``python -m evals.train_classifiers``: one labelling function per head (1 positive,
0 negative, None unused) and the :class:`HeadConfig` table with source boosts and the
false-positive budgets that set each head's thresholds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from evals.classifier_corpus import (
    EXFIL_SOURCE,
    HELD_OUT_SOURCES,
    WRITTEN_FILES,
    Record,
)
from evals.classifier_splits import (
    RAW_BIPIA,
)

__all__ = [
    "ATTACK_LABELS", "GUARDRAIL_TECHNIQUES", "HEADS", "HeadConfig", "OFF_DOMAIN_SOURCES",
    "TOPIC_AMBIGUOUS_BANKING_INTENTS", "label_exfiltration", "label_harmful", "label_injection",
    "label_topic", "label_toxicity",
]

#: Labels of the hand-written sets and the corpus, and the heads that must catch them.
ATTACK_LABELS = ("injection", "jailbreak", "harmful", "toxic", "exfiltration")
# Banking77 intents an airline customer would phrase the same way (refunds, double charges,
# identity checks): not usable as "off-domain" examples for the topic head.
TOPIC_AMBIGUOUS_BANKING_INTENTS = (
    "Refund_not_showing_up",
    "request_refund",
    "transaction_charged_twice",
    "card_payment_fee_charged",
    "extra_charge_on_statement",
    "pending_card_payment",
    "declined_card_payment",
    "card_payment_not_recognised",
    "reverted_card_payment?",
    "card_payment_wrong_exchange_rate",
    "edit_personal_details",
    "verify_my_identity",
    "unable_to_verify_identity",
    "why_verify_identity",
)
OFF_DOMAIN_SOURCES = (
    "banking77",
    "xstest",
    "toxigen",
    "davidson",
    "advbench",
    "harmbench",
    "jbb_behaviors",
    "gptfuzz_questions",
    "multijail",
    "pyrit_airt",
)


#: Hand-written attack techniques whose words are a customer's words (a lie about the policy,
#: a false claim of a cancellation, "I am that customer", pleading): no text classifier can
#: tell them from honest negotiation without refusing honest customers, and the tool
#: guardrails stop what they ask for (code checks the policy, the owner and the facts). They
#: are evaluated (evals.heldout), never trained on.
GUARDRAIL_TECHNIQUES = ("policy_lie", "compensation_fraud", "impersonation", "coercion_bypass")


def _usable(r: Record) -> bool:
    if r.source == "written_attacks" and r.category in GUARDRAIL_TECHNIQUES:
        return False
    return r.source not in RAW_BIPIA and r.source not in HELD_OUT_SOURCES


def label_injection(r: Record) -> int | None:
    if not _usable(r):
        return None
    if r.label in ("injection", "jailbreak", "exfiltration"):
        # Asking the agent for other people's data is an attack on what it may reveal: too few
        # examples for a head of its own (validation recall < 0.8), so it is this head's.
        return 1
    if r.label == "harmful":
        return 0 if r.lang == "en" else None
    return 0  # benign and toxic


def label_toxicity(r: Record) -> int | None:
    if not _usable(r):
        return None
    return {"toxic": 1, "benign": 0}.get(r.label)


def label_harmful(r: Record) -> int | None:
    if not _usable(r):
        return None
    if r.label == "harmful":
        # MultiJail's 9 non-English languages have few or no benign counterparts in the corpus:
        # trained on, they would teach "non-English means harmful". They are reported as a
        # slice instead. The hand-written travel requests in other languages are trained on.
        return 1 if r.lang == "en" or r.source != "multijail" else None
    return 0 if r.label == "benign" else None


def label_exfiltration(r: Record) -> int | None:
    """Return 1 for a request for other people's personal data, 0 for benign, else None."""
    if not _usable(r):
        return None
    if r.label == "exfiltration":
        return 1
    return 0 if r.label == "benign" else None


def label_topic(r: Record) -> int | None:
    """Return 1 for off-domain, 0 for on-domain (airline desk), None when unused."""
    if not _usable(r):
        return None
    if r.source in ("airline_train", *WRITTEN_FILES):
        if r.label != "benign":
            return None
        return 1 if r.domain == "off" else 0
    if r.source == "sgd_flights":
        return 0
    if r.source == "carriers_clean":
        return 0 if r.category == "text" else None
    if r.source == "composite_benign":
        return 0
    if r.source == "composite_mixed":
        return None
    if r.source in OFF_DOMAIN_SOURCES:
        if r.lang != "en" or r.label in ("injection", "jailbreak"):
            return None
        if r.source == "banking77" and r.category in TOPIC_AMBIGUOUS_BANKING_INTENTS:
            return None
        return 1
    return None


@dataclass(frozen=True, slots=True)
class HeadConfig:
    """How one head is trained and how its thresholds are chosen.

    Attributes:
        name: Head name (artefact file stem).
        description: What a high score means.
        label: Maps a record to 1 (positive), 0 (negative) or None (not used by this head).
        boost: Extra weight per source on top of the sqrt-dampened source share.
        block_fpr: Largest macro-averaged share of validation customer-benign messages
            allowed to block.
        escalate_fpr: Largest macro-averaged share of validation customer-benign messages at or
            above the escalate threshold (blocked + uncertain): the uncertain-band budget.
        pooling: Candidate pooling modes; validation picks one jointly with C
            ("max_segments" scores the whole text and each sentence/line, keeps the max).
    """

    name: str
    description: str
    label: Callable[[Record], int | None]
    boost: Mapping[str, float]
    block_fpr: float
    escalate_fpr: float
    pooling: tuple[str, ...] = ("none", "max_segments")


HEADS: tuple[HeadConfig, ...] = (
    HeadConfig(
        name="injection",
        description="prompt injection, jailbreak or system-prompt extraction, direct or planted "
        "in pasted third-party content",
        label=label_injection,
        boost={"airline_train": 6.0, "carriers_clean": 2.0, "xstest": 2.0, "written_attacks": 6.0,
               EXFIL_SOURCE: 3.0,
               "written_benign": 6.0, "written_benign_extra": 6.0, "written_guard": 6.0,
               "written_guard2": 6.0},
        # Looser than the other heads: layers 1+2 together must block >= 95 % of attacks. The
        # budget is macro-averaged over customer sources; 0.75 % here kept the held-out tau-bench
        # turns under 1 % blocked (see evals/reports/quality.md).
        block_fpr=0.0075,
        escalate_fpr=0.03,
    ),
    HeadConfig(
        name="toxicity",
        description="abusive, hateful or offensive language",
        label=label_toxicity,
        boost={"airline_train": 4.0, "toxigen": 2.0, "written_attacks": 4.0, "written_benign": 6.0,
               "written_benign_extra": 6.0, "written_guard": 6.0, "written_guard2": 6.0},
        # Stricter than the security heads: refusing a customer who swore about a lost bag
        # costs more than escalating them, and abuse is not an attack on the agent.
        block_fpr=0.0025,
        escalate_fpr=0.02,
    ),
    HeadConfig(
        name="harmful",
        description="a plain request for harmful help (weapons, fraud, smuggling, hacking...)",
        label=label_harmful,
        boost={"airline_train": 4.0, "xstest": 3.0, "jailbreak_standins": 2.0,
               "written_attacks": 4.0, "written_benign": 6.0, "written_benign_extra": 6.0,
               "written_guard": 6.0, "written_guard2": 6.0},
        block_fpr=0.005,
        escalate_fpr=0.02,
    ),
    HeadConfig(
        name="topic",
        description="off-domain for an airline customer-service desk (score = P(off-domain))",
        label=label_topic,
        boost={"airline_train": 4.0, "written_benign": 4.0, "written_guard": 4.0, "written_guard2": 4.0},
        block_fpr=0.01,
        escalate_fpr=0.05,
        # Off-domain is a property of the whole message, not of its most off-topic sentence.
        pooling=("none",),
    ),
)
