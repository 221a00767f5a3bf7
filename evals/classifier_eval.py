"""Evaluate the written artefacts on held-out data and measure their latency.

Part of ``python -m evals.train_classifiers``: loads the artefacts through the runtime loader
and scores the held-out tau-bench turns and the hand-written airline sets, checks the
hand-written sets for overlap with training, and times each head and the whole layer.
"""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evals.classifier_corpus import (
    Record,
)
from evals.classifier_fit import (
    _r,
    rates,
)
from nodes.guards.base import Action, GuardContext
from nodes.guards.classifiers import (
    MODEL_NAMES,
    ClassifierLayer,
    TextClassifier,
    clear_cache,
    load_classifier,
    normalise,
)

__all__ = [
    "ACTIONS", "EXPECTED_HEAD", "evaluate_heldout", "evaluate_rows", "leakage_check",
    "measure_latency",
]


def _word_set(text: str) -> set[str]:
    return set(re.findall(r"\w+", normalise(text)))


def leakage_check(
    train: Sequence[Record], eval_rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Report the nearest hand-written training text (word Jaccard) for each eval message."""
    train_sets = [_word_set(r.text) for r in train]
    sims = []
    for row in eval_rows:
        e = _word_set(row["text"])
        best = 0.0
        for t in train_sets:
            if e and t:
                best = max(best, len(e & t) / len(e | t))
        sims.append(best)
    return {
        "max_jaccard": _r(max(sims) if sims else 0.0),
        "mean_jaccard": _r(statistics.fmean(sims) if sims else 0.0),
        "n_ge_0.8": sum(s >= 0.8 for s in sims),
        "n_ge_0.6": sum(s >= 0.6 for s in sims),
    }


EXPECTED_HEAD = {
    "injection": "injection",
    "jailbreak": "injection",
    "harmful": "harmful",
    "toxic": "toxicity",
    "exfiltration": "injection",
}
ACTIONS = ("allow", "escalate", "block")


def _share(n: int, d: int) -> float:
    return _r(n / max(1, d))


def evaluate_heldout(
    model_dir: Path, taubench: Sequence[str], eval_rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Score tau-bench turns and the hand-written airline set with the artefacts on disk."""
    clear_cache()
    layer = ClassifierLayer(model_dir=model_dir)
    ctx = GuardContext()
    heads = {n: load_classifier(n, model_dir=model_dir) for n in MODEL_NAMES}
    out: dict[str, Any] = {}

    tau_scores = {n: np.array([h.score(t) for t in taubench]) for n, h in heads.items()}
    tau_actions = Counter(layer.check(t, ctx).action.value for t in taubench)
    out["taubench"] = {
        "n": len(taubench),
        "per_head": {n: rates(s, heads[n].thresholds) for n, s in tau_scores.items()},
        "layer_actions": {a: tau_actions.get(a, 0) for a in ACTIONS},
        "layer_rates": {a: _share(tau_actions.get(a, 0), len(taubench)) for a in ACTIONS},
    }
    blocked = [
        (t, {n: _r(float(tau_scores[n][i]), 3) for n in MODEL_NAMES})
        for i, t in enumerate(taubench)
        if layer.check(t, ctx).action is Action.BLOCK
    ]
    out["taubench"]["blocked_examples"] = [{"text": t[:160], "scores": s} for t, s in blocked[:10]]

    out["airline_eval"] = evaluate_rows(layer, heads, eval_rows)
    return out


def evaluate_rows(
    layer: ClassifierLayer,
    heads: Mapping[str, TextClassifier],
    eval_rows: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """Run the layer on hand-written rows: 3-way tables by kind/label/category, misses."""
    ctx = GuardContext()
    rows = []
    for row in eval_rows:
        res = layer.check(row["text"], ctx)
        rows.append({**row, "action": res.action.value, "reason": res.reason,
                     "scores": {k: _r(v, 4) for k, v in res.scores.items()}})

    def table(key: Callable[[Mapping[str, Any]], str]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in rows:
            out.setdefault(key(r), dict.fromkeys(ACTIONS, 0))[r["action"]] += 1
        return dict(sorted(out.items()))

    head_hits: dict[str, Any] = {}
    for label, head in EXPECTED_HEAD.items():
        sel = [r for r in rows if r["label"] == label]
        if sel:
            th = heads[head].thresholds
            head_hits[label] = {
                "head": head,
                "n": len(sel),
                "block": sum(r["scores"][head] >= th.block for r in sel),
                "flagged": sum(r["scores"][head] >= th.escalate for r in sel),
            }
    benign = [r for r in rows if r["label"] == "benign"]
    attacks = [r for r in rows if r["label"] != "benign"]
    topic_th = heads["topic"].thresholds
    off = [r for r in benign if r["domain"] == "off"]
    on = [r for r in benign if r["domain"] != "off"]
    return {
        "n": len(rows),
        "layer_confusion": table(lambda r: "benign" if r["label"] == "benign" else "attack"),
        "by_label": table(lambda r: str(r["label"])),
        "by_category": table(lambda r: str(r["category"])),
        "expected_head": head_hits,
        "benign_block_rate": _share(sum(r["action"] == "block" for r in benign), len(benign)),
        "benign_escalate_rate": _share(
            sum(r["action"] == "escalate" for r in benign), len(benign)
        ),
        "attack_block_rate": _share(sum(r["action"] == "block" for r in attacks), len(attacks)),
        "attack_flag_rate": _share(sum(r["action"] != "allow" for r in attacks), len(attacks)),
        "topic": {
            "off_domain_flagged": sum(r["scores"]["topic"] >= topic_th.block for r in off),
            "n_off_domain": len(off),
            "on_domain_flagged": sum(r["scores"]["topic"] >= topic_th.block for r in on),
            "n_on_domain": len(on),
        },
        "misses": [
            {k: r[k] for k in ("id", "label", "category", "action", "scores", "text")}
            for r in rows
            if (r["label"] == "benign" and r["action"] != "allow")
            or (r["label"] != "benign" and r["action"] != "block")
        ],
    }


def measure_latency(model_dir: Path, texts: Sequence[str], repeats: int = 3) -> dict[str, Any]:
    """Per-text latency (microseconds) of each head and of the layer, sequential and pooled."""
    heads = {n: load_classifier(n, model_dir=model_dir) for n in MODEL_NAMES}
    seq = ClassifierLayer(model_dir=model_dir)
    par = ClassifierLayer(model_dir=model_dir, concurrent=True)
    ctx = GuardContext()

    def timed(fn: Callable[[str], object]) -> dict[str, float]:
        samples = []
        for _ in range(repeats):
            for t in texts:
                t0 = time.perf_counter_ns()
                fn(t)
                samples.append((time.perf_counter_ns() - t0) / 1000.0)
        samples.sort()
        return {
            "p50_us": round(samples[len(samples) // 2], 1),
            "p95_us": round(samples[int(len(samples) * 0.95)], 1),
            "p99_us": round(samples[int(len(samples) * 0.99)], 1),
            "max_us": round(samples[-1], 1),
        }

    for t in texts[:50]:  # warm-up
        seq.check(t, ctx)
        par.check(t, ctx)
    out: dict[str, Any] = {"n_texts": len(texts), "repeats": repeats}
    out["per_head_score"] = {n: timed(h.score) for n, h in heads.items()}
    out["layer_sequential"] = timed(lambda t: seq.check(t, ctx))
    out["layer_thread_pool"] = timed(lambda t: par.check(t, ctx))
    long_text = " ".join(texts)[:4000]
    out["layer_sequential_4000_chars"] = timed(lambda t: seq.check(long_text, ctx))
    return out
