"""Benchmark one long conversation: checkpoint bytes and latency per turn as the thread grows.

One thread, K lookup turns ("Show me reservation VAAOXJ": two model calls, one read tool,
every guard), offline planner, real Postgres. After each turn it measures what the turn added
to LangGraph's checkpoint tables for the thread (``checkpoints`` JSON, ``checkpoint_blobs``,
``checkpoint_writes``) and to the per-turn record tables (``guard_decisions``,
``thread_messages``), and the turn's wall time. Both state layouts run in the same process on
the same database, one after the other:

- ``before``: every message and every decision in each checkpoint, the whole history sent to
  the model (the state before issue 13, ``build_graph(bounded_state=False)``);
- ``bounded``: the state keeps the current turn, earlier turns and all decisions live in
  tables, the model gets ``model.history.max_messages`` earlier messages.

Prints a table at turns 1, 10, 50, 100, 200 (those within K) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["checkpoint_bytes", "main", "record_bytes", "run"]

USER = "lei_rossi_3206"
TEXT = "Show me reservation VAAOXJ"
MARKS = (1, 10, 50, 100, 200)
VARIANTS = {"before": False, "bounded": True}


def checkpoint_bytes(pool: Any, thread_id: str) -> int:
    """Return every byte LangGraph's checkpoint tables hold for one thread."""
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT (SELECT coalesce(sum(octet_length(blob)), 0) FROM checkpoint_blobs WHERE thread_id = %(t)s)"
            " + (SELECT coalesce(sum(octet_length(blob)), 0) FROM checkpoint_writes WHERE thread_id = %(t)s)"
            " + (SELECT coalesce(sum(octet_length(checkpoint::text) + octet_length(metadata::text)), 0)"
            "    FROM checkpoints WHERE thread_id = %(t)s) AS n",
            {"t": thread_id},
        ).fetchone()
    return int(row["n"])


def record_bytes(pool: Any, thread_id: str) -> int:
    """Return the bytes of the thread's rows in the per-turn record tables (decisions, messages)."""
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT (SELECT coalesce(sum(octet_length(decision::text)), 0) FROM guard_decisions"
            "        WHERE thread_id = %(t)s)"
            " + (SELECT coalesce(sum(octet_length(blob)), 0) FROM thread_messages WHERE thread_id = %(t)s) AS n",
            {"t": thread_id},
        ).fetchone()
    return int(row["n"])


def _grow(app: Any, pool: Any, turns: int) -> list[dict[str, float]]:
    thread = app.new_thread(user_id=USER)
    rows: list[dict[str, float]] = []
    stored, recorded = checkpoint_bytes(pool, thread), record_bytes(pool, thread)
    for _ in range(turns):
        start = time.perf_counter()
        app.send(thread_id=thread, user_id=USER, text=TEXT)
        ms = (time.perf_counter() - start) * 1000
        now, rec = checkpoint_bytes(pool, thread), record_bytes(pool, thread)
        rows.append({"ms": ms, "checkpoint_bytes": now - stored, "record_bytes": rec - recorded,
                     "checkpoint_total": now})
        stored, recorded = now, rec
    return rows


def _at(rows: list[dict[str, float]], turn: int) -> dict[str, float]:
    """Return turn ``turn``'s bytes and its latency, with the median of the five turns ending there."""
    row = rows[turn - 1]
    window = [r["ms"] for r in rows[max(0, turn - 5):turn]]
    return {"turn": turn, "checkpoint_bytes": int(row["checkpoint_bytes"]), "record_bytes": int(row["record_bytes"]),
            "checkpoint_total": int(row["checkpoint_total"]), "ms": round(row["ms"], 1),
            "ms_median5": round(statistics.median(window), 1)}


def run(*, turns: int = 200, database_url: str | None = None, variants: Sequence[str] = tuple(VARIANTS),
        warmup: int = 3) -> dict[str, Any]:
    """Grow one thread per variant to ``turns`` turns and return the measurements."""
    from graph.builder import build_graph
    from graph.runtime import AirlockServices, AirlockSettings
    from graph.service import AirlockApp

    services = AirlockServices.start(AirlockSettings.from_env(database_url=database_url, model_provider="offline"))
    results: dict[str, Any] = {"turns": turns, "text": TEXT,
                               "max_history": services.policy.model.history.max_messages, "variants": {}}
    try:
        for name in variants:
            app = AirlockApp(services=services)
            app.graph = build_graph(services=services, checkpointer=services.checkpointer(),
                                    bounded_state=VARIANTS[name])
            _grow(app, services.pool, warmup)  # lazy models, pools, prepared plans
            rows = _grow(app, services.pool, turns)
            results["variants"][name] = {
                "marks": [_at(rows, t) for t in MARKS if t <= turns],
                "per_turn": [{k: round(v, 1) for k, v in r.items()} for r in rows],
            }
    finally:
        services.close()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``airlock bench growth``."""
    parser = argparse.ArgumentParser(prog="airlock bench growth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=200, help="turns of the one thread (default 200)")
    parser.add_argument("--variant", choices=[*VARIANTS, "both"], default="both",
                        help="state layout to run (default both, in this order: before, bounded)")
    parser.add_argument("--json", default="evals/reports/bench_growth.json", help="where to write JSON")
    parser.add_argument("--database-url", help="Postgres URL (default: $DATABASE_URL, else the embedded server)")
    args = parser.parse_args(argv)
    if args.turns < 1:
        parser.error("--turns must be at least 1")
    variants = tuple(VARIANTS) if args.variant == "both" else (args.variant,)
    results = run(turns=args.turns, database_url=args.database_url, variants=variants)
    print(f"one thread, {args.turns} lookup turns, offline planner, Postgres; "
          f"model.history.max_messages={results['max_history']}")
    print(f"{'variant':<9} {'turn':>5} {'checkpoint B/turn':>18} {'records B/turn':>15} "
          f"{'checkpoint total':>17} {'ms':>8} {'ms (median 5)':>14}")
    for name, data in results["variants"].items():
        for m in data["marks"]:
            print(f"{name:<9} {m['turn']:>5} {m['checkpoint_bytes']:>18,} {m['record_bytes']:>15,} "
                  f"{m['checkpoint_total']:>17,} {m['ms']:>8} {m['ms_median5']:>14}")
        marks = {m["turn"]: m for m in data["marks"]}
        last = max(marks)
        if 10 in marks and last > 10:
            ratio = marks[last]["ms_median5"] / marks[10]["ms_median5"]
            print(f"{name:<9} turn {last} / turn 10 latency (median of 5): {ratio:.2f}x")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
