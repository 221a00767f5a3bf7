"""Load one or more processes with concurrent sessions: ``airlock bench load``.

Each session is a customer talking on a thread of their own through ``AirlockApp.send`` in a
thread of its own, as the Gradio and API worker threads do (offline planner, real guardrails,
real Postgres). Its messages cycle through a reservation lookup (2 model calls, 1 read tool)
and a policy question; every ``--turns-per-thread`` turns it starts a new thread, so a turn
costs the same at second 1 and second T (state growth is ``bench growth``'s subject).

- Closed loop (``--mode closed``): every session sends its next message as soon as the answer
  arrives, for ``--seconds``. Throughput is what one process can do.
- Open loop (``--mode open``): every session sends one message every ``--think`` seconds
  (sessions spread evenly over the interval). Latency is counted from when the message was due,
  so a turn waiting behind a slow one is charged for the wait (no coordinated omission).

Checkpointers compared in the same run (``--savers``):

- ``old``: what the app had before issue 13, one saver for the process on the app pool behind
  LangGraph's one lock around every checkpoint read and write;
- ``new``: ``AirlockServices.checkpointer()``, a pool of its own and no process-wide lock.

Reported per row: turns, turns/s, p50/p95/p99 per turn, errors (an exception or a turn without
an answer; exit 1 if any), CPU per turn (the process's user+system CPU time over the run divided
by turns: all threads, Postgres' own CPU not included), and database time per turn, measured two
ways, neither of them the server's CPU:

- ``checkpoint_ms``: wall time spent inside the checkpointer's calls (``get_tuple``, ``put``,
  ``put_writes``), summed over threads: round trips, serialisation and encryption, masking on a
  cache miss, and in ``old`` the wait for the lock (also shown alone as ``lock_wait_ms``);
- ``db_active_ms`` / ``db_xacts``: the growth of ``pg_stat_database.active_time`` (time sessions of
  this database were active: running statements or waiting for a lock, such as the audit chain's)
  and of committed transactions, per turn.
  Those count every session of the database (use a database of its own for the benchmark), and
  backends report them up to 10 s late, so the bench waits ``--stats-settle`` seconds before each
  reading (0: no wait, the numbers then lag behind).

With ``--processes P`` the sessions are split over P fresh processes that start together; their
numbers are added up (turns/s of all processes together, percentiles over all turns).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["SAVERS", "main", "markdown", "measure", "run", "summarise"]

USER = "lei_rossi_3206"
TEXTS = ("Show me reservation VAAOXJ", "What is the baggage allowance?")
SAVERS = ("old", "new")
MODES = ("closed", "open")
#: A backend sends its statistics when idle, at most once a second and up to 10 s late
#: (PGSTAT_IDLE_INTERVAL): wait this long before reading them.
STATS_SETTLE_S = 11.0
_METERED = ("get_tuple", "put", "put_writes")


class _Meter:
    """Wall time inside a saver's calls and waiting for its lock, summed over threads."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.seconds = 0.0
        self.calls = 0
        self.lock_wait = 0.0

    def call(self, seconds: float) -> None:
        with self._guard:
            self.seconds += seconds
            self.calls += 1

    def wait(self, seconds: float) -> None:
        with self._guard:
            self.lock_wait += seconds

    def reset(self) -> None:
        with self._guard:
            self.seconds, self.calls, self.lock_wait = 0.0, 0, 0.0


class _TimedLock:
    """A ``threading.Lock`` that adds the time spent waiting for it to a meter."""

    def __init__(self, meter: _Meter) -> None:
        self._lock = threading.Lock()
        self._meter = meter

    def __enter__(self) -> bool:
        start = time.perf_counter()
        self._lock.acquire()
        self._meter.wait(time.perf_counter() - start)
        return True

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()


def _metered(saver: Any, meter: _Meter) -> Any:
    """Time the saver's reads and writes (instance attributes shadow the class's methods)."""
    for name in _METERED:
        method = getattr(saver, name)

        def timed(*args: Any, _method: Callable[..., Any] = method, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                meter.call(time.perf_counter() - start)

        setattr(saver, name, timed)
    return saver


def _apps(services: Any, savers: Sequence[str]) -> dict[str, tuple[Any, _Meter]]:
    """Return an app per checkpointer variant, each with its meter."""
    from graph.builder import build_graph
    from graph.checkpoint_privacy import PrivatePostgresSaver
    from graph.runtime import checkpoint_serde
    from graph.service import AirlockApp

    apps: dict[str, tuple[Any, _Meter]] = {}
    for name in savers:
        meter = _Meter()
        app = AirlockApp(services=services)
        if name == "old":
            # Before issue 13: one saver on the app pool, LangGraph's lock around every cursor.
            saver = PrivatePostgresSaver(services.pool, serde=checkpoint_serde(services.settings.data_dir),
                                         scrubber=services.checkpoint_scrubber())
            saver.lock = _TimedLock(meter)  # type: ignore[assignment]
            app.graph = build_graph(services=services, checkpointer=_metered(saver, meter))
        else:
            _metered(services.checkpointer(), meter)
        apps[name] = (app, meter)
    return apps


def measure(app: Any, meter: _Meter, *, sessions: int, seconds: float, mode: str, think: float,
            turns_per_thread: int, start_at: float | None = None) -> dict[str, Any]:
    """Run ``sessions`` concurrent sessions on ``app`` and return the raw numbers (latencies in seconds).

    Args:
        app: The ``AirlockApp``.
        meter: The meter of the app's checkpointer (reset here).
        sessions: Concurrent sessions, one worker thread each.
        seconds: How long sessions start turns.
        mode: ``closed`` (next message when the answer arrives) or ``open`` (one every ``think`` s).
        think: Seconds between a session's messages in the open loop.
        turns_per_thread: A session starts a new thread after this many turns.
        start_at: ``time.monotonic()`` value to start at (default: now).
    """
    threads = [app.new_thread(user_id=USER, title="bench load") for _ in range(sessions)]
    latencies: list[float] = []
    errors: list[str] = []
    guard = threading.Lock()
    meter.reset()
    start = start_at if start_at is not None else time.monotonic()
    deadline = start + seconds

    def session(index: int) -> None:
        thread_id, done = threads[index], 0
        due = start + (think * index / sessions if mode == "open" else 0.0)
        while True:
            now = time.monotonic()
            if mode == "open":
                if due >= deadline:
                    return
                if due > now:
                    time.sleep(due - now)  # the think time: when this customer sends next
                scheduled, due = due, due + think
            else:
                if now >= deadline:
                    return
                scheduled = max(now, start)
                if scheduled > now:
                    time.sleep(scheduled - now)  # processes of a run start together
            text = TEXTS[done % len(TEXTS)]
            try:
                result = app.send(thread_id=thread_id, user_id=USER, text=text)
                problem = "" if result.reply and not result.pending and not result.invalid else (
                    f"no answer: {result.notice or result.invalid or 'paused'}")
            except Exception as exc:  # counted and reported, the session goes on
                problem = f"{type(exc).__name__}: {exc}"[:200]
            elapsed = time.monotonic() - scheduled
            with guard:
                if problem:
                    errors.append(problem)
                else:
                    latencies.append(elapsed)
            done += 1
            if done % turns_per_thread == 0:
                thread_id = app.new_thread(user_id=USER, title="bench load")

    cpu = time.process_time()
    with ThreadPoolExecutor(max_workers=sessions) as pool:
        list(pool.map(session, range(sessions)))
    wall = time.monotonic() - start
    return {"latencies": latencies, "errors": len(errors), "error_samples": sorted(set(errors))[:5],
            "cpu_s": time.process_time() - cpu, "wall_s": wall, "checkpoint_s": meter.seconds,
            "checkpoint_calls": meter.calls, "lock_wait_s": meter.lock_wait}


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


def summarise(parts: Sequence[dict[str, Any]], db: dict[str, float] | None = None) -> dict[str, Any]:
    """Add up the raw numbers of one or more processes into a report row."""
    latencies = [x for p in parts for x in p["latencies"]]
    turns = len(latencies)
    wall = max(p["wall_s"] for p in parts)

    def per_turn(total: float, scale: float = 1000.0) -> float | None:
        return round(total * scale / turns, 2) if turns else None

    row: dict[str, Any] = {
        "turns": turns, "turns_per_s": round(turns / wall, 2) if wall else 0.0,
        "errors": sum(p["errors"] for p in parts),
        "p50_ms": _pct(latencies, 0.50), "p95_ms": _pct(latencies, 0.95), "p99_ms": _pct(latencies, 0.99),
        "cpu_ms_per_turn": per_turn(sum(p["cpu_s"] for p in parts)),
        "checkpoint_ms_per_turn": per_turn(sum(p["checkpoint_s"] for p in parts)),
        "checkpoint_calls_per_turn": per_turn(sum(p["checkpoint_calls"] for p in parts), 1.0),
        "lock_wait_ms_per_turn": per_turn(sum(p["lock_wait_s"] for p in parts)),
        "wall_s": round(wall, 2),
    }
    if db is not None:
        row["db_active_ms_per_turn"] = per_turn(db["active_ms"], 1.0)
        row["db_xacts_per_turn"] = per_turn(db["xacts"], 1.0)
    samples = sorted({s for p in parts for s in p.get("error_samples", [])})
    if samples:
        row["error_samples"] = samples[:5]
    return row


def _db_stats(url: str) -> dict[str, float]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT active_time, xact_commit FROM pg_stat_database"
                           " WHERE datname = current_database()").fetchone()
    assert row is not None
    return {"active_ms": float(row[0] or 0.0), "xacts": float(row[1] or 0)}


class _DbClock:
    """Readings of the database's statistics; each reading ends one row and starts the next."""

    def __init__(self, url: str | None, settle: float) -> None:
        self._url, self._settle = url, settle
        self._last = self._read()

    def _read(self) -> dict[str, float] | None:
        if self._url is None:
            return None
        if self._settle:
            time.sleep(self._settle)  # let the backends' pending statistics arrive
        return _db_stats(self._url)

    def lap(self) -> dict[str, float] | None:
        """Return the growth since the last reading (None without a URL: the embedded server)."""
        now = self._read()
        before, self._last = self._last, now
        if now is None or before is None:
            return None
        return {k: now[k] - before[k] for k in now}


def _services(database_url: str | None) -> Any:
    from graph.runtime import AirlockServices, AirlockSettings

    return AirlockServices.start(AirlockSettings.from_env(database_url=database_url, model_provider="offline",
                                                          domain="airline", audit_anchor_interval=0))


def _warm(apps: dict[str, tuple[Any, _Meter]], turns: int) -> None:
    for app, _meter in apps.values():
        thread = app.new_thread(user_id=USER, title="bench warm-up")
        for i in range(turns):
            app.send(thread_id=thread, user_id=USER, text=TEXTS[i % len(TEXTS)])


Plan = list[tuple[str, int, str]]  # (mode, sessions, saver)


def _plan(modes: Sequence[str], sessions: Sequence[int], savers: Sequence[str]) -> Plan:
    return [(m, n, s) for m in modes for n in sessions for s in savers]


def _in_process(url: str | None, plan: Plan, *, seconds: float, think: float, turns_per_thread: int,
                warmup: int, settle: float) -> list[dict[str, Any]]:
    services = _services(url)
    try:
        apps = _apps(services, sorted({s for *_, s in plan}))
        _warm(apps, warmup)
        rows = []
        clock = _DbClock(url, settle)
        for mode, sessions, saver in plan:
            app, meter = apps[saver]
            raw = measure(app, meter, sessions=sessions, seconds=seconds, mode=mode, think=think,
                          turns_per_thread=turns_per_thread)
            rows.append({"mode": mode, "sessions": sessions, "saver": saver, "processes": 1,
                         **summarise([raw], clock.lap())})
        return rows
    finally:
        services.close()


def _child(url: str | None, saver: str, *, seconds: float, think: float, turns_per_thread: int,
           warmup: int, sessions: int, mode: str) -> int:
    """Run one share of a multi-process run: start, warm up, say ready, wait for go, measure, print JSON."""
    services = _services(url)
    try:
        apps = _apps(services, [saver])
        _warm(apps, warmup)
        print("ready", flush=True)
        line = sys.stdin.readline().split()  # "go <seconds until start>"
        start_at = time.monotonic() + float(line[1])
        app, meter = apps[saver]
        raw = measure(app, meter, sessions=sessions, seconds=seconds, mode=mode, think=think,
                      turns_per_thread=turns_per_thread, start_at=start_at)
        print(json.dumps(raw), flush=True)
    finally:
        services.close()
    return 0


def _processes(url: str | None, plan: Plan, processes: int, *, seconds: float, think: float,
               turns_per_thread: int, warmup: int, settle: float) -> list[dict[str, Any]]:
    rows = []
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    if url:
        env["DATABASE_URL"] = url  # not on the command line, where `ps` shows a password
    for mode, sessions, saver in plan:
        shares = [sessions // processes + (i < sessions % processes) for i in range(processes)]
        shares = [s for s in shares if s]
        children = [subprocess.Popen(
            [sys.executable, "-m", "evals.bench_load", "--child", "--savers", saver, "--mode", mode,
             "--sessions", str(share), "--seconds", str(seconds), "--think", str(think),
             "--turns-per-thread", str(turns_per_thread), "--warmup", str(warmup)],
            cwd=root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for share in shares]
        try:
            for child in children:
                assert child.stdout is not None
                if child.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"a bench process exited before it was ready (code {child.wait()})")
            clock = _DbClock(url, settle)
            for child in children:
                assert child.stdin is not None
                child.stdin.write("go 0.5\n")  # every process starts half a second from now
                child.stdin.flush()
            parts = []
            for child in children:
                out, _ = child.communicate()
                if child.returncode:
                    raise RuntimeError(f"a bench process failed (exit {child.returncode})")
                parts.append(json.loads(out.strip().splitlines()[-1]))
            db = clock.lap()
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
        rows.append({"mode": mode, "sessions": sessions, "saver": saver, "processes": len(shares),
                     **summarise(parts, db)})
    return rows


def run(*, sessions: Sequence[int] = (1, 50), seconds: float = 20.0, modes: Sequence[str] = ("closed",),
        think: float = 5.0, savers: Sequence[str] = SAVERS, processes: int = 1, turns_per_thread: int = 5,
        warmup: int = 6, database_url: str | None = None, settle: float = STATS_SETTLE_S) -> dict[str, Any]:
    """Run every (mode, sessions, saver) combination and return the report."""
    from evals.bench_turn import database_used
    from graph.runtime import AirlockSettings

    url, database = database_used(database_url)
    settings = AirlockSettings.from_env(database_url=url)
    plan = _plan(modes, sessions, savers)
    load_before = os.getloadavg()[0]
    options = {"seconds": seconds, "think": think, "turns_per_thread": turns_per_thread, "warmup": warmup,
               "settle": settle}
    if processes == 1:
        rows = _in_process(url, plan, **options)  # type: ignore[arg-type]
    else:
        rows = _processes(url, plan, processes, **options)  # type: ignore[arg-type]
    return {"database": database, "seconds": seconds, "think": think, "turns_per_thread": turns_per_thread,
            "processes": processes, "stats_settle_s": settle, "cpus": os.cpu_count(),
            "pool_max_size": settings.pool_max_size, "checkpoint_pool_size": settings.checkpoint_pool_size,
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)], "rows": rows}


COLUMNS = (("mode", "mode"), ("sessions", "sessions"), ("saver", "saver"), ("turns", "turns"),
           ("turns/s", "turns_per_s"), ("p50 ms", "p50_ms"), ("p95 ms", "p95_ms"), ("p99 ms", "p99_ms"),
           ("errors", "errors"), ("CPU ms/turn", "cpu_ms_per_turn"), ("ckpt ms/turn", "checkpoint_ms_per_turn"),
           ("ckpt calls/turn", "checkpoint_calls_per_turn"), ("lock wait ms/turn", "lock_wait_ms_per_turn"),
           ("db active ms/turn", "db_active_ms_per_turn"), ("db xacts/turn", "db_xacts_per_turn"))


def markdown(results: dict[str, Any]) -> str:
    """Return the report as a Markdown table."""
    modes = {row["mode"] for row in results["rows"]}
    loops = []
    if "closed" in modes:
        loops.append("closed loop: each session sends its next message when the answer arrives")
    if "open" in modes:
        loops.append(f"open loop: one message every {results['think']:g} s per session")
    lines = [
        "# `airlock bench load`",
        "",
        f"{results['processes']} process(es), {results['seconds']:g} s per row, {'; '.join(loops)}; "
        f"a new thread every {results['turns_per_thread']} turns; offline "
        f"planner; Postgres {results['database']}; app pool {results['pool_max_size']}, checkpoint pool "
        f"{results['checkpoint_pool_size']}; {results['cpus']} CPUs, load average {results['load_average'][0]} "
        f"before and {results['load_average'][1]} after (the machine is shared: compare rows of one run). "
        "`old`: one saver behind LangGraph's lock on the app pool (before issue 13); `new`: the app's "
        "checkpointer. CPU: this process's, not Postgres'. ckpt ms: wall time inside checkpointer calls summed "
        "over threads (includes the lock wait); db active ms: growth of pg_stat_database.active_time, time "
        "statements ran or waited for locks (all sessions of the database, read "
        f"{results.get('stats_settle_s', 0):g} s after each row).",
        "",
        "| " + " | ".join(title for title, _ in COLUMNS) + " |",
        "| " + " | ".join("---" if key in ("mode", "saver") else "---:" for _, key in COLUMNS) + " |",
    ]
    for row in results["rows"]:
        lines.append("| " + " | ".join("" if row.get(key) is None else str(row[key]) for _, key in COLUMNS) + " |")
    lines.append("")
    return "\n".join(lines)


def _table(results: dict[str, Any]) -> str:
    widths = [max(len(title), 7) for title, _ in COLUMNS]
    out = ["  ".join(title.rjust(w) for (title, _), w in zip(COLUMNS, widths, strict=True))]
    for row in results["rows"]:
        out.append("  ".join(("-" if row.get(key) is None else str(row[key])).rjust(w)
                             for (_, key), w in zip(COLUMNS, widths, strict=True)))
    return "\n".join(out)


def _sessions(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of session counts, e.g. 1,50") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("session counts must be at least 1")
    return values


def _choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        values = list(allowed) if text == "both" else [v.strip() for v in text.split(",") if v.strip()]
        if not values or any(v not in allowed for v in values):
            raise argparse.ArgumentTypeError(f"one or more of {', '.join(allowed)} (comma-separated), or both")
        return values
    return parse


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``airlock bench load``."""
    parser = argparse.ArgumentParser(prog="airlock bench load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=_sessions, default=[1, 50],
                        help="concurrent sessions, comma-separated for several rows (default 1,50)")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each row (default 20)")
    parser.add_argument("--mode", type=_choices(MODES), default=["closed"],
                        help="closed, open or both (default closed)")
    parser.add_argument("--think", type=float, default=5.0,
                        help="open loop: seconds between a session's messages (default 5)")
    parser.add_argument("--savers", type=_choices(SAVERS), default=list(SAVERS),
                        help="checkpointers to compare: old, new or both (default both)")
    parser.add_argument("--processes", type=int, default=1,
                        help="split the sessions over this many processes (default 1: this one)")
    parser.add_argument("--turns-per-thread", type=int, default=5,
                        help="a session starts a new thread after this many turns (default 5)")
    parser.add_argument("--warmup", type=int, default=6, help="warm-up turns per checkpointer (default 6)")
    parser.add_argument("--json", default="evals/reports/bench_load.json", help="where to write JSON")
    parser.add_argument("--markdown", default="evals/reports/bench_load.md",
                        help="where to write the Markdown report ('' for none)")
    parser.add_argument("--stats-settle", type=float, default=STATS_SETTLE_S,
                        help="seconds to let Postgres' statistics arrive before each reading (default 11)")
    parser.add_argument("--database-url", help="Postgres URL (default: $DATABASE_URL, else embedded)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.think <= 0 or args.stats_settle < 0:
        parser.error("--seconds and --think must be above 0, --stats-settle at least 0")
    if args.processes < 1 or args.turns_per_thread < 1 or args.warmup < 0:
        parser.error("--processes and --turns-per-thread must be at least 1, --warmup at least 0")
    if args.child:
        from evals.bench_turn import database_used

        return _child(database_used(args.database_url)[0], args.savers[0], seconds=args.seconds,
                      think=args.think, turns_per_thread=args.turns_per_thread, warmup=args.warmup,
                      sessions=args.sessions[0], mode=args.mode[0])
    results = run(sessions=args.sessions, seconds=args.seconds, modes=args.mode, think=args.think,
                  savers=args.savers, processes=args.processes, turns_per_thread=args.turns_per_thread,
                  warmup=args.warmup, database_url=args.database_url, settle=args.stats_settle)
    print(f"Postgres: {results['database']}; {results['processes']} process(es), {args.seconds:g} s per row, "
          f"{results['cpus']} CPUs, load average {results['load_average']}")
    print(_table(results))
    for row in results["rows"]:
        for sample in row.get("error_samples", []):
            print(f"error ({row['mode']}, {row['sessions']} sessions, {row['saver']}): {sample}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(results))
    return 1 if any(row["errors"] for row in results["rows"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
