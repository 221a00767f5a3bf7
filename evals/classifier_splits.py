"""Split the records into train/val/test and add the synthetic records built per split.

Part of ``python -m evals.train_classifiers``: stratified, grouped split assignment, BIPIA
attacks planted in third-party content, the jailbreak stand-ins and the composite messages,
each built from one split only so nothing leaks; :func:`build_records` assembles them all.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from evals.classifier_corpus import (
    HELD_OUT_SOURCES,
    WRITTEN_FILES,
    Record,
    exfil_records,
    fill_slots,
    load_airline_train,
    load_corpus,
    load_written,
)

__all__ = [
    "COMPOSITES_PER_TRAIN_SPLIT", "EMBEDDINGS_PER_ATTACK", "RAW_BIPIA", "SPLIT_FRACTIONS",
    "assign_splits", "build_records", "embed_bipia", "jailbreak_standins", "make_composites",
]

SPLIT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
# BIPIA text/code attacks only count as attacks once planted in third-party content; the raw
# instructions ("What is the capital of Brazil?") are never used as labelled direct turns.
RAW_BIPIA = ("bipia_text", "bipia_code")
EMBEDDINGS_PER_ATTACK = {"bipia_text": 4, "bipia_code": 3}
# Composite messages per split (scaled by the split's share): benign multi-sentence customer
# messages, and benign context around one attack / harmful / abusive sentence.
COMPOSITES_PER_TRAIN_SPLIT = {
    "composite_benign": 3000,
    "composite_mixed": 3000,
    "composite_attack": 800,
    "composite_harmful": 500,
    "composite_toxic": 300,
}


def _stable_hash(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def assign_splits(records: list[Record], seed: int) -> None:
    """Assign train/val/test, stratified by (source, label[, category]) and grouped.

    Within a stratum, groups are taken in seeded-hash order and each goes to the split furthest
    below its target share; a group already placed by an earlier stratum (a JBB goal is both a
    harmful request and the core of several jailbreaks) keeps its split.
    """
    strata: dict[tuple[str, str, str], dict[str, list[Record]]] = {}
    for r in records:
        if r.source in HELD_OUT_SOURCES:
            r.split = "heldout"
            continue
        key = (r.source, r.label, r.category if r.source in ("airline_train", *WRITTEN_FILES) else "")
        strata.setdefault(key, {}).setdefault(r.group, []).append(r)
    placed: dict[str, str] = {}
    for key in sorted(strata):
        groups = strata[key]
        total = sum(len(v) for v in groups.values())
        counts = dict.fromkeys(SPLIT_FRACTIONS, 0)
        for g, rs in groups.items():
            if g in placed:
                counts[placed[g]] += len(rs)
        for g in sorted(groups, key=lambda g: _stable_hash(seed, g)):
            if g not in placed:
                # Largest relative deficit first; ties resolved test > val > train so that
                # tiny strata still get a test example.
                placed[g] = max(
                    ("test", "val", "train"),
                    key=lambda s: (SPLIT_FRACTIONS[s] * total - counts[s]) / SPLIT_FRACTIONS[s],
                )
                counts[placed[g]] += len(groups[g])
            for r in groups[g]:
                r.split = placed[g]


def _compose(
    paragraphs: Sequence[str], payload: str | None, rng: random.Random, leads: Sequence[str]
) -> str:
    parts = list(paragraphs)
    if payload is not None:
        pos = rng.randrange(len(parts) + 1)
        parts.insert(pos, rng.choice(list(leads)) + payload)
    return "\n".join(parts)


def embed_bipia(records: list[Record], synth: Mapping[str, Any], seed: int) -> list[Record]:
    """Plant BIPIA attacks in realistic third-party content; add the clean carriers too.

    Every attack keeps its split (and group), so an instruction seen in training never appears in
    test. For each split as many clean carriers as planted ones are drawn from the same carrier
    pool, so the carrier format itself carries no signal.
    """
    slots = synth["slots"]
    out: list[Record] = []
    per_split: Counter[tuple[str, str]] = Counter()
    for r in records:
        if r.source not in RAW_BIPIA:
            continue
        code = r.source == "bipia_code"
        carriers = synth["code_carriers"] if code else synth["carriers"]
        for j in range(EMBEDDINGS_PER_ATTACK[r.source]):
            rng = random.Random(f"{seed}:embed:{r.group}:{j}")
            carrier = rng.choice(carriers)
            body = _compose(carrier["paragraphs"], r.text, rng, synth["inject_leads"])
            text = rng.choice(synth["prefaces"]) + fill_slots(body, slots, rng)
            out.append(
                Record(
                    text=text,
                    label="injection",
                    source=f"{r.source}_embedded",
                    lang="en",
                    group=r.group,
                    category=carrier["kind"],
                    domain="airline",
                    split=r.split,
                    meta={"bipia_category": r.meta.get("bipia_category")},
                )
            )
            per_split[(r.split, "code" if code else "text")] += 1
    for (split, kind), n in sorted(per_split.items()):
        carriers = synth["code_carriers"] if kind == "code" else synth["carriers"]
        seen: dict[str, None] = {}
        for j in range(4 * n):
            if len(seen) >= n:
                break
            rng = random.Random(f"{seed}:clean:{split}:{kind}:{j}")
            carrier = rng.choice(carriers)
            body = _compose(carrier["paragraphs"], None, rng, synth["inject_leads"])
            seen.setdefault(rng.choice(synth["prefaces"]) + fill_slots(body, slots, rng), None)
        for k, text in enumerate(seen):
            out.append(
                Record(
                    text=text,
                    label="benign",
                    source="carriers_clean",
                    lang="en",
                    group=f"carrier:{split}:{kind}:{k}",
                    category=kind,
                    domain="airline",
                    split=split,
                )
            )
    return out


def _pool(records: Iterable[Record], split: str, pred: Callable[[Record], bool]) -> list[str]:
    return list(dict.fromkeys(r.text for r in records if r.split == split and pred(r)))


def jailbreak_standins(records: Sequence[Record]) -> list[Record]:
    """Return the harmful requests the corpus filled into jailbreak templates, as plain requests.

    ``meta.placeholder_filled`` names six harmful stand-ins (a knife through airport security,
    an airline phishing email, a stolen passport...). As plain, unwrapped requests they are
    exactly what the harmful head must catch; they go to the training split only.
    """
    seen = dict.fromkeys(
        str(r.meta["placeholder_filled"])
        for r in records
        if r.source in ("gptfuzz_templates", "pyrit_jailbreak") and r.meta.get("placeholder_filled")
    )
    return [
        Record(text=t, label="harmful", source="jailbreak_standins", group=f"standin:{i}",
               domain="airline", split="train")
        for i, t in enumerate(seen)
    ]


def make_composites(records: Sequence[Record], seed: int) -> list[Record]:
    """Join short turns into longer messages, per split, so length and politeness carry no label.

    ``composite_benign``: 2-4 benign airline turns (SGD + hand-written). ``composite_mixed``:
    the same with BANKING77 questions and XSTest safe prompts in the pool (more question-style
    prose; not used by the topic head). ``composite_attack`` /
    ``_harmful`` / ``_toxic``: benign turns around one short attack / harmful request / abusive
    sentence from the same split. Every part comes from one split, so nothing leaks.
    """

    def benign(r: Record) -> bool:
        return r.label == "benign" and (
            r.source == "sgd_flights" or (r.source == "airline_train" and r.domain != "off")
        )

    kinds: dict[str, tuple[str, Callable[[Record], bool]]] = {
        "composite_attack": (
            "injection",
            lambda r: r.label in ("injection", "jailbreak")
            and len(r.text) <= 300
            and r.source in ("airline_train", "deepset", "pyrit_extraction", "langkit"),
        ),
        "composite_harmful": (
            "harmful",
            lambda r: r.label == "harmful"
            and r.lang == "en"
            and len(r.text) <= 200
            and r.source
            in ("airline_train", "gptfuzz_questions", "advbench", "jbb_behaviors", "xstest",
                "pyrit_airt"),
        ),
        "composite_toxic": (
            "toxic",
            lambda r: r.label == "toxic" and r.source in ("airline_train", "toxigen"),
        ),
    }
    def mixed(r: Record) -> bool:
        return benign(r) or (r.label == "benign" and r.source in ("banking77", "xstest"))

    out: list[Record] = []
    for split, frac in SPLIT_FRACTIONS.items():
        pool = _pool(records, split, benign)
        if len(pool) < 4:
            continue
        scale = frac / SPLIT_FRACTIONS["train"]
        for source, source_pool in (
            ("composite_benign", pool),
            ("composite_mixed", _pool(records, split, mixed)),
        ):
            n = round(COMPOSITES_PER_TRAIN_SPLIT[source] * scale)
            for j in range(n):
                rng = random.Random(f"{seed}:{source}:{split}:{j}")
                parts = rng.sample(source_pool, rng.choice((2, 3, 3, 4)))
                out.append(
                    Record(
                        text=rng.choice((" ", " ", "\n")).join(parts),
                        label="benign",
                        source=source,
                        group=f"{source}:{split}:{j}",
                        domain="airline" if source == "composite_benign" else "mixed",
                        split=split,
                    )
                )
        for source, (label, pred) in kinds.items():
            payloads = _pool(records, split, pred)
            if not payloads:
                continue
            n = round(COMPOSITES_PER_TRAIN_SPLIT[source] * scale)
            for j in range(n):
                rng = random.Random(f"{seed}:{source}:{split}:{j}")
                before = rng.sample(pool, rng.choice((0, 1, 1, 2)))
                after = rng.sample(pool, 1 if not before or rng.random() < 0.3 else 0)
                parts = [*before, rng.choice(payloads), *after]
                out.append(
                    Record(
                        text=rng.choice((" ", " ", "\n")).join(parts),
                        label=label,
                        source=source,
                        group=f"{source}:{split}:{j}",
                        domain="airline",
                        split=split,
                    )
                )
    return out


def build_records(data_dir: Path, seed: int, *, written: Sequence[str] = WRITTEN_FILES) -> list[Record]:
    """Return every labelled record with its split, as training and the quality eval see them.

    Args:
        data_dir: The training corpus.
        seed: The split and sampling seed.
        written: The hand-written files to include (splits, composites and embeddings depend on
            the whole set, so a trainer that leaves one out must leave it out here).
    """
    records = load_corpus(data_dir)
    airline, synth = load_airline_train(seed)
    records += airline
    for name in written:
        records += load_written(name, seed, synth["slots"])
    assign_splits(records, seed)
    records += exfil_records(seed)  # split by its own seeded hash
    records += embed_bipia(records, synth, seed)
    records += jailbreak_standins(records)
    records += make_composites(records, seed)
    return records
