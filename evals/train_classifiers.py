"""Train the layer-2 guard classifiers and write their artefacts and reports.

``make train`` runs ``python -m evals.train_classifiers``. From the labelled corpus in
``../shared/data`` (``--data-dir`` / ``$AIRLOCK_TRAINING_DATA``) and the hand-written airline data
in ``evals/data/`` it rebuilds, bit-for-bit for a given seed and data,

* ``nodes/guards/models/<head>.npy``: float32 weights over the hashed feature space;
* ``nodes/guards/models/<head>.json``: featuriser spec, bias, thresholds, calibration, data
  hashes, per-class counts and metrics;

and then evaluates the written artefacts (through the runtime loader) into
``evals/reports/classifiers.{json,md}``: held-out test split, held-out tau-bench airline turns,
the hand-written airline set ``evals/data/airline_eval.jsonl``, and latency (the only part that
varies between runs).

Method per head: hashed word 1-2-grams + char 3-5-grams (``nodes.guards.classifiers.featurize``),
L2-regularised logistic regression (liblinear) with class-balanced, source-dampened sample
weights, C picked on the validation split, Platt scaling fitted on the validation split and
folded into the weights, thresholds picked on the validation split. The test split (stratified by
source and label, grouped so that templates / translations / dialogues never straddle splits) is
only scored, never used for any choice.

The steps live in modules of their own: ``evals.classifier_corpus`` (loading),
``evals.classifier_splits`` (splits and synthetic records), ``evals.classifier_heads`` (what
each head learns), ``evals.classifier_fit`` (fitting, calibration, thresholds),
``evals.classifier_artefacts`` (writing the artefacts), ``evals.classifier_eval`` (evaluating
them) and ``evals.classifier_report`` (the Markdown report). This module runs them end to end
and re-exports their names, so ``from evals.train_classifiers import ...`` keeps working.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import sklearn
from threadpoolctl import threadpool_limits

from evals.classifier_artefacts import _json_bytes, _npy_bytes, write_artefacts
from evals.classifier_corpus import (
    CORPUS_FILES,
    DEFAULT_DATA_DIR,
    EVALS_DATA,
    EXFIL_ATTACKS,
    EXFIL_BENIGN,
    EXFIL_SOURCE,
    HELD_OUT_SOURCES,
    REPO,
    VARIANTS,
    WRITTEN_FILES,
    DataError,
    Record,
    clean_tweet,
    exfil_records,
    fill_slots,
    group_key,
    load_airline_train,
    load_corpus,
    load_written,
    read_jsonl,
    resolve_data_dir,
    sha256_file,
)
from evals.classifier_eval import (
    ACTIONS,
    EXPECTED_HEAD,
    evaluate_heldout,
    evaluate_rows,
    leakage_check,
    measure_latency,
)
from evals.classifier_fit import (
    C_GRID,
    CUSTOMER_SOURCES,
    MIN_BLOCK,
    MIN_ESCALATE,
    FeatureStore,
    HeadResult,
    calibration_stats,
    confusion,
    evaluate_split,
    fit_platt,
    macro_rate,
    rates,
    sample_weights,
    score_all,
    threshold_for_macro_rate,
    train_head,
)
from evals.classifier_heads import (
    ATTACK_LABELS,
    GUARDRAIL_TECHNIQUES,
    HEADS,
    OFF_DOMAIN_SOURCES,
    TOPIC_AMBIGUOUS_BANKING_INTENTS,
    HeadConfig,
    label_exfiltration,
    label_harmful,
    label_injection,
    label_topic,
    label_toxicity,
)
from evals.classifier_report import render_markdown
from evals.classifier_splits import (
    COMPOSITES_PER_TRAIN_SPLIT,
    EMBEDDINGS_PER_ATTACK,
    RAW_BIPIA,
    SPLIT_FRACTIONS,
    assign_splits,
    build_records,
    embed_bipia,
    jailbreak_standins,
    make_composites,
)
from nodes.guards.classifiers import (
    MODEL_DIR,
    MODEL_NAMES,
    ClassifierLayer,
    FeatureSpec,
    Featurizer,
    load_classifier,
    segments,
)

__all__ = [
    "ACTIONS", "ATTACK_LABELS", "COMPOSITES_PER_TRAIN_SPLIT", "CORPUS_FILES", "CUSTOMER_SOURCES",
    "C_GRID", "DEFAULT_DATA_DIR", "DEFAULT_REPORTS_DIR", "DEFAULT_SEED", "DataError",
    "EMBEDDINGS_PER_ATTACK", "EVALS_DATA", "EXFIL_ATTACKS", "EXFIL_BENIGN", "EXFIL_SOURCE",
    "EXPECTED_HEAD", "FeatureStore", "GUARDRAIL_TECHNIQUES", "HEADS", "HELD_OUT_SOURCES",
    "HeadConfig", "HeadResult", "MIN_BLOCK", "MIN_ESCALATE", "OFF_DOMAIN_SOURCES", "RAW_BIPIA",
    "REPO", "Record", "SPEC", "SPLIT_FRACTIONS", "TOPIC_AMBIGUOUS_BANKING_INTENTS", "VARIANTS",
    "WRITTEN_FILES", "assign_splits", "build_records", "calibration_stats", "clean_tweet",
    "confusion", "embed_bipia", "evaluate_heldout", "evaluate_rows", "evaluate_split",
    "exfil_records", "fill_slots", "fit_platt", "group_key", "jailbreak_standins",
    "label_exfiltration", "label_harmful", "label_injection", "label_topic", "label_toxicity",
    "leakage_check", "load_airline_train", "load_corpus", "load_written", "macro_rate", "main",
    "make_composites", "measure_latency", "rates", "read_jsonl", "render_markdown",
    "resolve_data_dir", "sample_weights", "score_all", "sha256_file", "threshold_for_macro_rate",
    "train", "train_head", "write_artefacts",
]

DEFAULT_REPORTS_DIR = REPO / "evals" / "reports"
DEFAULT_SEED = 20240611
SPEC = FeatureSpec()


def train(
    *,
    data_dir: Path,
    out_dir: Path,
    reports_dir: Path | None,
    seed: int = DEFAULT_SEED,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every head, write the artefacts to ``out_dir`` and (optionally) the reports."""
    t_start = time.perf_counter()
    records = build_records(data_dir, seed)
    eval_rows = read_jsonl(EVALS_DATA / "airline_eval.jsonl")
    taubench = [r.text for r in records if r.source == "taubench"]
    log(f"loaded {len(records)} records ({Counter(r.split for r in records)})")

    t0 = time.perf_counter()
    store = FeatureStore(SPEC)
    store.add(r.text for r in records if r.split in ("train", "val", "test"))
    idf = store.fit_idf([r.text for r in records if r.split == "train"])
    store.finalise(idf)
    store.add(seg for r in records if r.split in ("val", "test") for seg in segments(r.text))
    featurizer = Featurizer(
        spec=SPEC, idf=idf, idf_sha256=hashlib.sha256(_npy_bytes(idf)).hexdigest()
    )
    t_feat = time.perf_counter() - t0
    log(f"featurised {len(store.raw)} distinct texts in {t_feat:.1f}s")

    data_files = {rel: sha256_file(data_dir / rel) for rel, _ in CORPUS_FILES}
    for name in ("airline_train.jsonl", "synthetic.json", *(f"{w}.jsonl" for w in WRITTEN_FILES)):
        data_files[f"evals/data/{name}"] = sha256_file(EVALS_DATA / name)
    provenance = {
        "seed": seed,
        "trainer": "python -m evals.train_classifiers",
        "data_sha256": data_files,
        "held_out": "taubench_airline_user_turns.jsonl, evals/data/airline_eval.jsonl and "
        "evals/data/airline_final_check.jsonl are never used for training or tuning",
        "licences": "see nodes/guards/models/MODEL_CARD.md",
        # Bit-for-bit reproduction is guaranteed for these versions (liblinear and numpy's
        # float arithmetic are deterministic, but may differ across releases).
        "environment": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
        },
    }
    t0 = time.perf_counter()
    results = []
    # One BLAS thread: identical floating-point summation order on every machine.
    with threadpool_limits(limits=1):
        for cfg in HEADS:
            results.append(train_head(cfg, records, store, featurizer, seed, log))
    t_fit = time.perf_counter() - t0
    digests = write_artefacts(results, featurizer, out_dir, provenance)
    t_total = time.perf_counter() - t_start
    log(f"wrote {len(digests)} files to {out_dir} ({t_total:.1f}s)")

    report: dict[str, Any] = {
        "seed": seed,
        "heads": {
            r.config.name: {
                "C": r.meta["training"]["C"],
                "pooling": r.classifier.pooling,
                "thresholds": {"block": r.classifier.thresholds.block,
                               "escalate": r.classifier.thresholds.escalate},
                "counts": r.meta["training"]["counts"],
                "metrics": r.meta["metrics"],
            }
            for r in results
        },
        "artefacts": {
            name: {"bytes": (out_dir / name).stat().st_size, "sha256": sha}
            for name, sha in sorted(digests.items())
        },
    }
    if reports_dir is not None:
        heldout = evaluate_heldout(out_dir, taubench, eval_rows)
        final_rows = read_jsonl(EVALS_DATA / "airline_final_check.jsonl")
        heldout["final_check"] = evaluate_rows(
            ClassifierLayer(model_dir=out_dir),
            {n: load_classifier(n, model_dir=out_dir) for n in MODEL_NAMES},
            final_rows,
        )
        heldout["eval_files_sha256"] = {
            f"evals/data/{n}": sha256_file(EVALS_DATA / n)
            for n in ("airline_eval.jsonl", "airline_final_check.jsonl")
        }
        airline = [r for r in records if r.source == "airline_train"]
        heldout["leakage"] = leakage_check(airline, eval_rows)
        mj = [
            r for r in records if r.source == "multijail" and r.lang != "en" and r.split == "test"
        ]
        harm = load_classifier("harmful", model_dir=out_dir)
        heldout["multijail_non_english_test"] = {
            "n": len(mj),
            **rates(np.array([harm.score(r.text) for r in mj]), harm.thresholds),
        }
        report["heldout"] = heldout
        bench_texts = taubench[:500] + [r["text"] for r in eval_rows]
        report["latency"] = measure_latency(out_dir, bench_texts)
        report["timing"] = {
            "total_s": round(t_total, 1),
            "featurise_s": round(t_feat, 1),
            "fit_s": round(t_fit, 1),
        }
        reports_dir.mkdir(parents=True, exist_ok=True)
        (reports_dir / "classifiers.json").write_bytes(_json_bytes(report))
        (reports_dir / "classifiers.md").write_text(render_markdown(report), encoding="utf-8")
        log(f"wrote reports to {reports_dir}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evals.train_classifiers",
        description="Train the layer-2 guard classifiers and rebuild nodes/guards/models/ "
        "bit-for-bit (same seed + same data => identical files).",
    )
    parser.add_argument("--data-dir", help="training corpus (default: $AIRLOCK_TRAINING_DATA "
                        f"or {DEFAULT_DATA_DIR})")
    parser.add_argument("--out-dir", default=str(MODEL_DIR), help="artefact directory "
                        "(default: %(default)s)")
    parser.add_argument("--reports-dir", default=str(DEFAULT_REPORTS_DIR),
                        help="where classifiers.{json,md} go (default: %(default)s)")
    parser.add_argument("--no-reports", action="store_true",
                        help="only write the artefacts (skip held-out evaluation and latency)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="default: %(default)s")
    parser.add_argument("--check", action="store_true",
                        help="train into a temporary directory and fail if the result differs "
                        "from the artefacts in --out-dir")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    data_dir = resolve_data_dir(args.data_dir)
    out_dir = Path(args.out_dir).resolve()

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            rep = train(
                data_dir=data_dir, out_dir=Path(tmp), reports_dir=None, seed=args.seed, log=log
            )
            bad = [n for n, a in rep["artefacts"].items()
                   if not (out_dir / n).is_file() or sha256_file(out_dir / n) != a["sha256"]]
        if bad:
            print(f"artefacts differ from a fresh build: {', '.join(bad)}", file=sys.stderr)
            return 1
        print("artefacts match a fresh build", file=sys.stderr)
        return 0
    train(
        data_dir=data_dir,
        out_dir=out_dir,
        reports_dir=None if args.no_reports else Path(args.reports_dir).resolve(),
        seed=args.seed,
        log=log,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
