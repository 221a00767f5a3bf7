"""Load the HTTP API: concurrent SSE clients for a while, then the same turns through the in-process service.

Each client owns a thread and sends "Show me reservation VAAOXJ" (a guarded lookup turn, offline
planner, Postgres) again and again until the time is up (``--seconds``; CI uses a second or two).
Reported: turns per second, p50/p95 time to the first event and per turn, errors (exit 1 if any);
the in-process run uses the same number of turn workers, so the HTTP overhead is the ratio of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["main", "markdown", "run"]

TEXT = "Show me reservation VAAOXJ"
USER = "lei_rossi_3206"
SECRET = "bench-secret-for-the-airlock-api-0123456789"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


def _summary(first: list[float], turns: list[float], errors: int, seconds: float) -> dict[str, Any]:
    return {"turns": len(turns), "turns_per_s": round(len(turns) / seconds, 2), "errors": errors,
            "first_event_p50_ms": _pct(first, 0.5), "first_event_p95_ms": _pct(first, 0.95),
            "turn_p50_ms": _pct(turns, 0.5), "turn_p95_ms": _pct(turns, 0.95)}


Sample = tuple[list[float], list[float], int]  # times to the first event, turn times, errors


async def _http(url: str, threads: list[str], seconds: float) -> Sample:
    import httpx
    import jwt

    now = int(time.time())
    auth = {"Authorization": "Bearer " + jwt.encode(
        {"sub": USER, "roles": ["customer"], "iss": "airlock", "aud": "airlock-api", "exp": now + 3600},
        SECRET, algorithm="HS256")}
    first: list[float] = []
    turns: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def client(http: httpx.AsyncClient, thread_id: str) -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            start = time.monotonic()
            seen_first, done = None, False
            try:
                async with http.stream("POST", f"/v1/threads/{thread_id}/messages", json={"text": TEXT},
                                       headers=auth) as response:
                    if response.status_code != 200:
                        errors += 1
                        continue
                    async for line in response.aiter_lines():
                        if line.startswith("event:"):
                            name = line.split(":", 1)[1].strip()
                            # `run` is sent before the turn starts; the first graph event is what
                            # the in-process run's first update is compared with.
                            if name != "run":
                                seen_first = seen_first or time.monotonic()
                            done = name == "done"
            except httpx.HTTPError:
                errors += 1
                continue
            if not done or seen_first is None:
                errors += 1
                continue
            first.append(seen_first - start)
            turns.append(time.monotonic() - start)

    limits = httpx.Limits(max_connections=len(threads) + 10)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(http, t) for t in threads))
    return first, turns, errors


def _in_process(app: Any, threads: list[str], seconds: float, workers: int) -> Sample:
    first: list[float] = []
    turns: list[float] = []
    errors = 0
    lock = threading.Lock()
    executor = ThreadPoolExecutor(max_workers=workers)  # a FIFO queue of turns, as in the server
    deadline = time.monotonic() + seconds

    def client(thread_id: str) -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            start = time.monotonic()
            seen: list[float] = []

            def mark(_update: dict[str, Any], seen: list[float] = seen) -> None:
                if not seen:
                    seen.append(time.monotonic())

            def turn(thread_id: str = thread_id, mark: Any = mark) -> None:
                with app.observe(mark):
                    app.send(thread_id=thread_id, user_id=USER, text=TEXT)

            try:
                executor.submit(turn).result()
            except Exception:
                with lock:
                    errors += 1
                continue
            with lock:
                first.append((seen[0] if seen else time.monotonic()) - start)
                turns.append(time.monotonic() - start)

    with ThreadPoolExecutor(max_workers=len(threads)) as pool:
        list(pool.map(client, threads))
    executor.shutdown()
    return first, turns, errors


def run(*, clients: int = 50, seconds: float = 60.0, workers: int = 8, database_url: str | None = None,
        slices: int = 6) -> dict[str, Any]:
    """Run both measurements on one set of services and return the numbers.

    Each way runs ``seconds`` in all, in ``slices`` alternating slices (HTTP, in process, HTTP,
    ...), so load from elsewhere on the machine falls on both alike and the ratio stays fair.
    """
    import uvicorn

    from graph.runtime import AirlockServices, AirlockSettings
    from graph.service import AirlockApp
    from ui.api import ServeSettings, create_api

    services = AirlockServices.start(AirlockSettings.from_env(database_url=database_url, model_provider="offline"))
    load_before = os.getloadavg()[0]
    samples: dict[str, Sample] = {"http": ([], [], 0), "in_process": ([], [], 0)}

    def add(name: str, sample: Sample) -> None:
        first, turns, errors = samples[name]
        samples[name] = (first + sample[0], turns + sample[1], errors + sample[2])

    try:
        app = AirlockApp(services=services)
        settings = ServeSettings(jwt_secret=SECRET, mount_ui=False, rate_user="1000000/minute",
                                 rate_ip="1000000/minute", run_workers=workers)
        server = uvicorn.Server(uvicorn.Config(create_api(app=app, settings=settings), host="127.0.0.1", port=0,
                                               log_level="warning"))
        runner = threading.Thread(target=server.run, daemon=True)
        runner.start()
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        over_http = [app.new_thread(user_id=USER, title="bench") for _ in range(clients)]
        local = [app.new_thread(user_id=USER, title="bench") for _ in range(clients)]
        for _ in range(slices):
            add("http", asyncio.run(_http(f"http://127.0.0.1:{port}", over_http, seconds / slices)))
            add("in_process", _in_process(app, local, seconds / slices, workers))
        server.should_exit = True
        runner.join(timeout=30)
    finally:
        services.close()
    http, inproc = (_summary(*samples[n], seconds) for n in ("http", "in_process"))
    ratio = round(http["turn_p50_ms"] / inproc["turn_p50_ms"], 2) if inproc["turn_p50_ms"] else None
    return {"clients": clients, "seconds": seconds, "workers": workers, "slices": slices, "cpus": os.cpu_count(),
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)], "http": http,
            "in_process": inproc, "http_over_in_process_p50": ratio}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``airlock bench api``."""
    parser = argparse.ArgumentParser(prog="airlock bench api", description=__doc__)
    parser.add_argument("--clients", type=int, default=50, help="concurrent SSE clients (default 50)")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of each run (default 60)")
    parser.add_argument("--workers", type=int, default=8, help="turns run at once (AIRLOCK_API_RUN_WORKERS)")
    parser.add_argument("--slices", type=int, default=6,
                        help="alternate HTTP and in-process runs in this many slices each (default 6)")
    parser.add_argument("--json", default="evals/reports/bench_api.json", help="where to write JSON")
    parser.add_argument("--markdown", default="evals/reports/bench_api.md",
                        help="where to write the Markdown report ('' for none)")
    parser.add_argument("--database-url", help="Postgres URL (default: $DATABASE_URL, else embedded)")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.workers < 1 or args.slices < 1:
        parser.error("--clients, --workers and --slices must be at least 1 and --seconds above 0")
    results = run(clients=args.clients, seconds=args.seconds, workers=args.workers, database_url=args.database_url,
                  slices=args.slices)
    print(f"{args.clients} clients, {args.seconds:g} s each way in {args.slices} alternating slices, {args.workers} "
          f"turn workers, offline planner; load average {results['load_average']} on {results['cpus']} CPUs")
    for name in ("http", "in_process"):
        r = results[name]
        print(f"{name:<11} {r['turns_per_s']:>7} turns/s  first event p50 {r['first_event_p50_ms']} ms "
              f"p95 {r['first_event_p95_ms']} ms  turn p50 {r['turn_p50_ms']} ms p95 {r['turn_p95_ms']} ms  "
              f"errors {r['errors']}")
    print(f"HTTP / in-process, turn p50: {results['http_over_in_process_p50']}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(results))
    return 1 if results["http"]["errors"] or results["in_process"]["errors"] else 0


def markdown(results: dict[str, Any]) -> str:
    """Return the report as a Markdown table."""
    lines = [
        "# `airlock bench api`",
        "",
        f"{results['clients']} concurrent clients for {results['seconds']:g} s each way (in {results['slices']} "
        f"alternating slices, so background load falls on both alike), {results['workers']} turn workers, offline "
        f"planner, one Postgres; {results['cpus']} CPUs, load average {results['load_average'][0]} before and "
        f"{results['load_average'][1]} after (the machine is shared). Each client sends \"Show me reservation VAAOXJ\" "
        "on its own thread, again and again: a guarded lookup turn (input guards, the tool, the output guard). "
        "HTTP: SSE streams against `airlock serve`'s app (uvicorn, JWT, rate limits); in process: "
        "`AirlockApp.send` through a pool of the same number of workers. First event: the first guard or tool "
        "event (HTTP) / graph update (in process) after the request.",
        "",
        "| | turns | turns/s | errors | first event p50 | p95 | turn p50 | p95 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, label in (("http", "HTTP (SSE)"), ("in_process", "in process")):
        r = results[name]
        lines.append(f"| {label} | {r['turns']} | {r['turns_per_s']} | {r['errors']} | {r['first_event_p50_ms']} ms "
                     f"| {r['first_event_p95_ms']} ms | {r['turn_p50_ms']} ms | {r['turn_p95_ms']} ms |")
    http = results["http"]
    lines += ["", f"HTTP over in process, turn p50: **{results['http_over_in_process_p50']}x**."]
    if http["turns_per_s"]:
        busy = results["workers"] / http["turns_per_s"]
        lines += ["", f"With {results['clients']} clients and {results['workers']} workers a turn mostly waits for a "
                  f"worker: each turn holds one for about {busy:.2f} s here ({results['workers']} workers / "
                  f"{http['turns_per_s']} turns/s), the rest of its time is the queue; the time to the first event "
                  "includes that wait. Compare the two ways with each other, not with a quiet machine."]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
