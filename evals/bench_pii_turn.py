"""Count and time the PII analysis inside guarded turns: analyzer calls per turn and CPU in detection.

Runs a few guarded turns (offline planner, Postgres) and counts calls to Presidio's
``AnalyzerEngine.analyze`` and the CPU time (of the thread doing it, so load from other
processes on the machine does not count) spent in the PII layer's detection, per turn. The
per-process analysis cache is emptied before every turn, so each turn's texts are new to it, as a
new customer's message is: what is reused is reused within the turn.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["TURNS", "main", "run"]

USER = "lei_rossi_3206"
TURNS = {
    "lookup": "Show me reservation VAAOXJ",
    "name and a bag": "My name is Ana Lopez, please add 1 bag to VAAOXJ",
    "hand-off to a reviewer": "My name is Ana Lopez, please transfer me to a human agent",
}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run(*, n: int = 30, database_url: str | None = None) -> dict[str, Any]:
    """Run the turns and return, per turn, analyzer calls and detection CPU milliseconds."""
    from graph.runtime import AirlockServices, AirlockSettings
    from graph.service import AirlockApp
    from nodes.guards import pii

    analyzer = pii.get_analyzer()
    calls = [0]
    cpu = [0.0]
    real_analyze, real_detect = analyzer.analyze, pii._detect

    def analyze(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real_analyze(*args, **kwargs)

    def detect(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return real_detect(*args, **kwargs)
        finally:
            cpu[0] += (time.thread_time() - started) * 1000

    analyzer.analyze = analyze  # type: ignore[method-assign]
    pii._detect = detect
    services = AirlockServices.start(AirlockSettings(database_url=database_url, model_provider="offline"))
    results: dict[str, Any] = {"n": n, "turns": {}}
    try:
        app = AirlockApp(services=services)
        for label, text in TURNS.items():
            for _ in range(3):  # warm-up: models, pools, prepared plans
                app.send(thread_id=app.new_thread(user_id=USER), user_id=USER, text=text)
            counts: list[int] = []
            spent: list[float] = []
            for _ in range(n):
                thread = app.new_thread(user_id=USER)
                pii.clear_analysis_cache()
                calls[0], cpu[0] = 0, 0.0
                app.send(thread_id=thread, user_id=USER, text=text)
                counts.append(calls[0])
                spent.append(cpu[0])
            results["turns"][label] = {
                "analyzer_calls_per_turn": round(statistics.mean(counts), 2),
                "pii_cpu_ms_p50": round(statistics.median(spent), 2), "pii_cpu_ms_p95": round(_pct(spent, 0.95), 2),
            }
    finally:
        services.close()
        analyzer.analyze = real_analyze  # type: ignore[method-assign]
        pii._detect = real_detect
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``airlock bench pii``."""
    parser = argparse.ArgumentParser(prog="airlock bench pii", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30, help="turns per kind (default 30)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                        help="Postgres URL (default: $DATABASE_URL, else the embedded server)")
    parser.add_argument("--json", default="evals/reports/bench_pii.json", help="where to write JSON")
    args = parser.parse_args(argv)
    results = run(n=args.n, database_url=args.database_url)
    print(f"PII analysis per guarded turn (offline planner, Postgres), n={args.n} per row, fresh cache per turn")
    print(f"{'turn':<26} {'analyzer calls':>15} {'CPU p50 ms':>11} {'CPU p95 ms':>11}")
    for label, r in results["turns"].items():
        print(f"{label:<26} {r['analyzer_calls_per_turn']:>15} {r['pii_cpu_ms_p50']:>11} {r['pii_cpu_ms_p95']:>11}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
