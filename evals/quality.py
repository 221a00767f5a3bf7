"""End-to-end quality of the input guard pipeline (``python -m evals.quality``).

Runs the REAL input pipeline built from the policy (``tools/airline/policy.yaml``
``guards.input``: prefilter -> classifiers -> pii), without the layer-4 safety endpoint, so an
uncertain message stays ESCALATE, over

* the held-out test split of the training corpus (rebuilt with the training script's own seeded
  loader and splitter): attacks (injection + jailbreak) and benign messages;
* the held-out tau-bench airline customer turns (benign; never trained or tuned on);
* the hand-written airline sets in ``evals/data`` (``airline_eval``, ``airline_final_check``,
  ``airline_customer_turns``).

It prints confusion matrices (rows: true label; columns: allow / escalate / block; MODIFY, i.e.
PII masked or text normalised, counts as allow) and the rates, and writes
``evals/reports/quality.{json,md}``. The output is deterministic (no timings in the files).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from evals.train_classifiers import (
    CUSTOMER_SOURCES,
    DEFAULT_SEED,
    EVALS_DATA,
    Record,
    build_records,
    label_injection,
    read_jsonl,
    resolve_data_dir,
)
from graph.policy import load_policy
from graph.runtime import build_pipeline
from nodes.guards.base import Action, GuardContext
from tools.airline import POLICY_PATH

__all__ = ["ACTIONS", "build_input_pipeline", "evaluate", "main"]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REPORTS_DIR = REPO / "evals" / "reports"
ACTIONS = ("allow", "escalate", "block")
AIRLINE_SETS = ("airline_eval.jsonl", "airline_final_check.jsonl", "airline_customer_turns.jsonl")
ATTACK_LABELS = ("injection", "jailbreak")


def build_input_pipeline() -> Any:
    """The policy's input pipeline without the (network) safety layer."""
    policy = load_policy(POLICY_PATH)
    return build_pipeline([layer for layer in policy.guards.input if layer.layer != "safety"])


def _action(value: Action) -> str:
    if value is Action.BLOCK:
        return "block"
    if value is Action.ESCALATE:
        return "escalate"
    return "allow"  # ALLOW or MODIFY (normalised / PII-masked text goes on to the agent)


def test_split(seed: int, data_dir: Path) -> tuple[list[Record], list[Record], list[str]]:
    """Return (test attacks, test benign, tau-bench turns), rebuilt as the trainer builds them."""
    records = build_records(data_dir, seed)
    attacks = [r for r in records if r.split == "test" and label_injection(r) == 1]
    benign = [
        r for r in records if r.split == "test" and r.label == "benign" and label_injection(r) == 0
    ]
    tau = [r.text for r in records if r.source == "taubench"]
    return attacks, benign, tau


def _summary(rows: Sequence[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], str]) -> dict[str, Any]:
    table: dict[str, dict[str, int]] = {}
    for r in rows:
        table.setdefault(key(r), dict.fromkeys(ACTIONS, 0))[r["action"]] += 1
    return dict(sorted(table.items()))


def _rates(counts: Mapping[str, int]) -> dict[str, float]:
    n = max(1, sum(counts.values()))
    return {
        "n": sum(counts.values()),
        "block": round(counts["block"] / n, 4),
        "escalate": round(counts["escalate"] / n, 4),
        "block_or_escalate": round((counts["block"] + counts["escalate"]) / n, 4),
    }


def evaluate(seed: int = DEFAULT_SEED, data_dir: Path | None = None) -> dict[str, Any]:
    """Run the pipeline over every set; return the report (deterministic)."""
    pipeline = build_input_pipeline()
    ctx = GuardContext()
    attacks, benign, tau = test_split(seed, resolve_data_dir(str(data_dir) if data_dir else None))

    def run(text: str) -> tuple[str, str]:
        res = pipeline.run(text, ctx)
        act = _action(res.action)
        return act, (res.layer if act != "allow" else "")

    def rows_of(items: Sequence[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
        out = []
        for text, label, source, ident in items:
            act, layer = run(text)
            out.append({"text": text, "label": label, "source": source, "id": ident,
                        "action": act, "layer": layer})
        return out

    sets: dict[str, list[dict[str, Any]]] = {
        "test_attacks": rows_of([(r.text, r.label, r.source, "") for r in attacks]),
        "test_benign": rows_of([(r.text, "benign", r.source, "") for r in benign]),
        "taubench": rows_of([(t, "benign", "taubench", "") for t in tau]),
    }
    for name in AIRLINE_SETS:
        rows = read_jsonl(EVALS_DATA / name)
        sets[name.removesuffix(".jsonl")] = rows_of(
            [(r["text"], r["label"], str(r.get("category", "")), str(r["id"])) for r in rows]
        )

    report: dict[str, Any] = {"seed": seed, "policy": str(POLICY_PATH.relative_to(REPO)),
                              "pipeline": [s.name for s in pipeline.specs], "sets": {}}
    for name, rows in sets.items():
        by_label = _summary(rows, lambda r: str(r["label"]))
        entry: dict[str, Any] = {
            "n": len(rows),
            "confusion": _summary(
                rows, lambda r: "benign" if r["label"] == "benign" else "attack"
            ),
            "by_label": by_label,
            "by_source": _summary(rows, lambda r: str(r["source"])),
            "blocked_by_layer": dict(sorted(Counter(r["layer"] for r in rows
                                                    if r["action"] == "block").items())),
        }
        conf = entry["confusion"]
        if "attack" in conf:
            entry["attack_rates"] = _rates(conf["attack"])
        if "benign" in conf:
            entry["benign_rates"] = _rates(conf["benign"])
        inj = [r for r in rows if r["label"] in ATTACK_LABELS]
        if inj and len(inj) != len(rows):
            entry["injection_jailbreak_rates"] = _rates(
                Counter({a: 0 for a in ACTIONS} | Counter(r["action"] for r in inj))
            )
        if name == "test_benign":
            cust = [r for r in rows if r["source"] in CUSTOMER_SOURCES]
            entry["customer_benign_rates"] = _rates(
                Counter({a: 0 for a in ACTIONS} | Counter(r["action"] for r in cust))
            )
        entry["errors"] = [
            {"id": r["id"], "label": r["label"], "source": r["source"], "action": r["action"],
             "layer": r["layer"], "text": r["text"][:160]}
            for r in rows
            if name in AIRLINE_SETS_KEYS
            and ((r["label"] == "benign") == (r["action"] != "allow"))
            and not (r["label"] != "benign" and r["action"] == "block")
        ]
        report["sets"][name] = entry
    report["headline"] = {
        "test_attack_recall_at_block": report["sets"]["test_attacks"]["attack_rates"]["block"],
        "test_attack_recall_at_block_or_escalate":
            report["sets"]["test_attacks"]["attack_rates"]["block_or_escalate"],
        "test_benign_block_rate": report["sets"]["test_benign"]["benign_rates"]["block"],
        "test_customer_benign_block_rate":
            report["sets"]["test_benign"]["customer_benign_rates"]["block"],
        "taubench_block_rate": report["sets"]["taubench"]["benign_rates"]["block"],
        "taubench_escalate_rate": report["sets"]["taubench"]["benign_rates"]["escalate"],
    }
    return report


AIRLINE_SETS_KEYS = tuple(n.removesuffix(".jsonl") for n in AIRLINE_SETS)


def _cm_lines(table: Mapping[str, Mapping[str, int]]) -> list[str]:
    lines = ["| true \\ action | allow | escalate | block |", "|---|---:|---:|---:|"]
    for label, row in table.items():
        lines.append(f"| {label} | {row['allow']} | {row['escalate']} | {row['block']} |")
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    """Render the report as Markdown."""
    h = report["headline"]
    lines = [
        "# Input guard pipeline: end-to-end quality",
        "",
        "Generated by `python -m evals.quality`. The real input pipeline from "
        f"`{report['policy']}` ({' -> '.join(report['pipeline'])}; the layer-4 safety endpoint "
        "is left out, so the uncertain band stays ESCALATE). MODIFY counts as allow. "
        "Deterministic.",
        "",
        "## Headline",
        "",
        "| metric | value |",
        "|---|---:|",
        *(f"| {k} | {v} |" for k, v in h.items()),
    ]
    for name, e in report["sets"].items():
        lines += ["", f"## {name} (n = {e['n']})", "", *_cm_lines(e["confusion"])]
        if len(e["by_label"]) > 2 or name.startswith("airline"):
            lines += ["", "By label:", "", *_cm_lines(e["by_label"])]
        for key in ("attack_rates", "injection_jailbreak_rates", "benign_rates",
                    "customer_benign_rates"):
            if key in e:
                lines.append("")
                lines.append(f"{key}: {e[key]}")
        lines += ["", f"Blocked by layer: {e['blocked_by_layer']}"]
        if name.startswith("test_"):
            lines += ["", "| source | allow | escalate | block |", "|---|---:|---:|---:|"]
            lines += [f"| {s} | {r['allow']} | {r['escalate']} | {r['block']} |"
                      for s, r in e["by_source"].items()]
        if e["errors"]:
            lines += ["", "Errors (benign not allowed, attacks not blocked):", ""]
            lines += [f"- {x['id']} [{x['label']}/{x['source']} -> {x['action']} {x['layer']}] "
                      f"`{x['text'][:110]}`" for x in e["errors"]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation, print the confusion matrices, write the reports."""
    parser = argparse.ArgumentParser(prog="python -m evals.quality", description=__doc__)
    parser.add_argument("--data-dir", help="training corpus (default: ../shared/data)")
    parser.add_argument("--reports-dir", default=str(DEFAULT_REPORTS_DIR))
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    report = evaluate(args.seed, Path(args.data_dir) if args.data_dir else None)
    out = Path(args.reports_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(
        json.dumps(report, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    md = render_markdown(report)
    (out / "quality.md").write_text(md, encoding="utf-8")
    for name, e in report["sets"].items():
        print(f"\n{name} (n={e['n']})")
        for label, row in e["confusion"].items():
            print(f"  {label:8s} allow {row['allow']:6d}  escalate {row['escalate']:5d}  "
                  f"block {row['block']:5d}")
        for key in ("attack_rates", "benign_rates", "customer_benign_rates"):
            if key in e:
                print(f"  {key}: {e[key]}")
    print("\nheadline:", json.dumps(report["headline"]))
    print(f"wrote {out / 'quality.json'} and quality.md ({time.perf_counter() - t0:.1f}s)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
