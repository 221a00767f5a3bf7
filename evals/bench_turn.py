"""Benchmark one guarded turn end to end: offline planner, real Postgres, real guardrails.

Compares the full policy with a baseline whose guard pipeline keeps only layer 1
(the pre-filters), so the cost of layers 2-5 inside a real turn is measured in the
same run. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["database_used", "main", "run"]

USER = "lei_rossi_3206"
TURNS = {
    "lookup (2 model calls, 1 read tool)": "Show me reservation VAAOXJ",
    "policy question (1 model call)": "What is the baggage allowance?",
}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _baseline_policy(source: Path, folder: Path) -> Path:
    data = yaml.safe_load(source.read_text())
    guards = data.setdefault("guards", {})
    guards["input"] = [layer for layer in guards.get("input", []) if layer.get("layer") == "prefilter"] or [
        {"layer": "prefilter"}
    ]
    guards["output"] = []
    guards["tool_result"] = []
    path = folder / "baseline-policy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _measure(app: Any, text: str, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        thread = app.new_thread(user_id=USER)
        # Every turn repeats its text: without this the PII layer's per-process analysis cache
        # would serve all but the first, which no new customer message gets.
        pii = sys.modules.get("nodes.guards.pii")
        if pii is not None:
            pii.clear_analysis_cache()
        start = time.perf_counter()
        app.send(thread_id=thread, user_id=USER, text=text)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def database_used(database_url: str | None = None) -> tuple[str | None, str]:
    """Return the URL a benchmark uses (explicit, else ``DATABASE_URL``; None: embedded) and how to name it."""
    from graph.db import redact_conninfo

    url = database_url or os.environ.get("DATABASE_URL") or None
    if url is None:
        return None, "embedded Postgres (no --database-url, DATABASE_URL unset)"
    source = "--database-url" if database_url else "DATABASE_URL"
    return url, f"{redact_conninfo(url)} (from {source})"


def run(*, n: int = 60, database_url: str | None = None) -> dict[str, Any]:
    """Run the turn benchmark on ``database_url`` (else ``DATABASE_URL``, else the embedded server)."""
    from graph.runtime import AirlockServices, AirlockSettings
    from graph.service import AirlockApp
    from tools.airline import POLICY_PATH

    database_url, database = database_used(database_url)
    results: dict[str, Any] = {"n": n, "database": database, "turns": {}}
    with tempfile.TemporaryDirectory() as tmp:
        variants = {
            "full policy (layers 1-5)": None,
            "baseline (layer 1 only)": _baseline_policy(POLICY_PATH, Path(tmp)),
        }
        for variant, policy in variants.items():
            services = AirlockServices.start(AirlockSettings(
                database_url=database_url, policy_path=policy, model_provider="offline"))
            try:
                app = AirlockApp(services=services)
                for label, text in TURNS.items():
                    _measure(app, text, 5)  # warm-up: lazy models, pools, prepared plans
                    samples = _measure(app, text, n)
                    results["turns"].setdefault(label, {})[variant] = {
                        "p50_ms": round(statistics.median(samples), 2),
                        "p95_ms": round(_pct(samples, 0.95), 2),
                        "max_ms": round(max(samples), 2),
                    }
            finally:
                services.close()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m evals.bench_turn``."""
    parser = argparse.ArgumentParser(prog="airlock bench turn", description=__doc__)
    parser.add_argument("--n", type=int, default=60, help="turns per measurement (default 60)")
    parser.add_argument("--json", default="evals/reports/bench_turn.json", help="where to write JSON")
    parser.add_argument("--database-url", help="Postgres URL (default: $DATABASE_URL, else embedded)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    results = run(n=args.n, database_url=args.database_url)
    print(f"guarded turn, offline planner, Postgres: {results['database']}; n={args.n} per row")
    print(f"{'turn':<40} {'variant':<26} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for label, variants in results["turns"].items():
        for variant, r in variants.items():
            print(f"{label:<40} {variant:<26} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['max_ms']:>8}")
        full, base = variants["full policy (layers 1-5)"], variants["baseline (layer 1 only)"]
        print(f"{'':<40} {'overhead of layers 2-5':<26} {full['p50_ms'] - base['p50_ms']:>8.2f} "
              f"{full['p95_ms'] - base['p95_ms']:>8.2f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
