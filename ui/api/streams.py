"""Server-Sent Events of a run, read from Postgres so any process can serve a reconnect."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent

from ui.api.deps import ApiState
from ui.api.problems import Problem
from ui.api.runs import TERMINAL

__all__ = ["first_event", "last_event_id", "run_stream"]


def last_event_id(header: str | None) -> int:
    """Parse ``Last-Event-ID`` (a run's event number); 422 for anything else."""
    if header is None or header == "":
        return 0
    if not (header.isascii() and header.isdigit()) or len(header) > 9:
        raise Problem(422, "Last-Event-ID must be an event number this API sent")
    return int(header)


async def first_event(state: ApiState, run_id: str, *, after: int, timeout_s: float = 30.0) -> dict[str, object] | None:
    """Wait for the run's first event after ``after`` (None if it ends or the wait times out)."""
    wake = state.wakeups.register(run_id)
    try:
        with anyio.move_on_after(timeout_s):
            while True:
                wake.clear()
                events, status = await anyio.to_thread.run_sync(state.runs.events_after, run_id, after, 1)
                if events:
                    return events[0]
                if status != "running":
                    return None
                with anyio.move_on_after(state.settings.poll_interval_s):
                    await wake.wait()
    finally:
        state.wakeups.unregister(run_id, wake)
    return None


async def _events(state: ApiState, run_id: str, after: int) -> AsyncIterator[ServerSentEvent]:
    seq = after
    idle = 0
    # Woken at once by this process's runs; another process's run is polled in Postgres.
    wake = state.wakeups.register(run_id)
    try:
        while True:
            wake.clear()
            events, status = await anyio.to_thread.run_sync(state.runs.events_after, run_id, seq)
            for row in events:
                seq = int(row["seq"])
                yield ServerSentEvent(data=json.dumps(row["data"], default=str), event=str(row["event"]),
                                      id=str(seq))
                if row["event"] == TERMINAL:
                    return
            if events:
                idle = 0
                continue
            if status != "running":
                return  # ended without a terminal event: nothing more will come
            idle += 1
            if idle % 10 == 0:  # quiet for a while: is the process that runs it still alive?
                await anyio.to_thread.run_sync(state.runs.reap_if_dead, run_id)
            with anyio.move_on_after(state.settings.poll_interval_s):
                await wake.wait()
    finally:
        state.wakeups.unregister(run_id, wake)


def run_stream(state: ApiState, run: dict[str, object], *, after: int, status_code: int = 200) -> EventSourceResponse:
    """Stream a run's events after ``after``; the response names the run for a reconnect."""
    run_id = str(run["run_id"])
    headers = {"X-Run-Id": run_id, "Content-Location": f"/v1/runs/{run_id}/events", "Cache-Control": "no-store",
               "X-Accel-Buffering": "no"}
    return EventSourceResponse(_events(state, run_id, after), status_code=status_code, headers=headers, ping=15)
