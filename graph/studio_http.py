"""Keep ``langgraph dev``'s thread status in step with threads the app resumed (``langgraph.json`` → ``http``).

The dev server (the in-memory runtime) keeps its own record of each thread (status, values,
interrupts) and recomputes it only when a run or a state update goes through the server. A
gate the customer answers in the app resumes the same thread in the same Postgres
checkpoints, so Studio's *state* view is current at once, but its thread list would show
the thread as ``interrupted`` until the next server run. This app's lifespan checks the
server's interrupted threads every :data:`SYNC_EVERY_S` seconds against the checkpoints
(through the server's own graph and checkpointer) and updates the record when the pending
interrupts changed. It adds no route, so no request reaches it.

Its middleware applies to every route of the server, before authentication:
:class:`graph.body_limit.BodyLimitMiddleware` refuses a request body over
``AIRLOCK_MAX_BODY_BYTES`` (default 1 MiB) with 413 before the server parses it, so a
multi-megabyte message never reaches a run or the checkpoint tables.

Limitation: this uses the in-memory runtime's thread operations (``langgraph_runtime``),
which is what ``langgraph dev`` runs; a deployment on the LangGraph server with its own
Postgres runtime does not get this sync. Threads the dev server never saw (made in the app)
are not added to Studio's list: Studio lists only threads created through the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware

from graph.body_limit import BodyLimitMiddleware, max_body_bytes

__all__ = ["SYNC_EVERY_S", "app", "interrupt_ids", "sync_thread_status"]

log = logging.getLogger(__name__)
SYNC_EVERY_S = 2.0


def interrupt_ids(interrupts: Mapping[str, Iterable[Any]] | None) -> set[str]:
    """Return the ids of a thread record's interrupts (dicts or Interrupt objects)."""
    found: set[str] = set()
    for items in (interrupts or {}).values():
        for item in items:
            value = item.get("id") if isinstance(item, Mapping) else getattr(item, "id", None)
            if value:
                found.add(str(value))
    return found


async def sync_thread_status() -> int:
    """Recompute the server's record of each interrupted thread whose interrupts changed; return how many."""
    from langgraph_runtime.database import connect  # the dev server's runtime (in-memory)
    from langgraph_runtime.ops import Threads

    updated = 0
    async with connect() as conn:
        threads = [t for t in conn.store["threads"] if t.get("status") == "interrupted"]
        for thread in threads:
            config: dict[str, Any] = {"configurable": {"thread_id": str(thread["thread_id"])}}
            state = await Threads.State.get(conn, config, subgraphs=False, ctx=None)
            live = {str(i.id) for task in state.tasks for i in task.interrupts}
            if state.next and live == interrupt_ids(thread.get("interrupts")):
                continue
            await Threads.set_status(conn, thread["thread_id"], {
                "next": list(state.next), "values": state.values,
                "tasks": [{"id": t.id, "interrupts": list(t.interrupts)} for t in state.tasks],
            }, None)
            updated += 1
    return updated


async def _loop() -> None:
    while True:
        await asyncio.sleep(SYNC_EVERY_S)
        try:
            changed = await sync_thread_status()
            if changed:
                log.info("studio: %d thread status(es) updated from the checkpoints", changed)
        except Exception:  # keep syncing; one bad thread must not stop the others next time
            log.exception("studio: thread status sync failed")


@asynccontextmanager
async def _lifespan(_: Starlette) -> AsyncIterator[None]:
    task = asyncio.create_task(_loop(), name="airlock-studio-status-sync")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


app = Starlette(routes=[], lifespan=_lifespan,
                middleware=[Middleware(BodyLimitMiddleware, max_bytes=max_body_bytes())])
