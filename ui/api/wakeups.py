"""Wake the streams of a run when this process stores an event of it (no polling for local runs).

Runs of other processes are still read by polling Postgres, at a slower pace.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict

__all__ = ["Wakeups"]


class Wakeups:
    """Per-run events on the server's event loop, set from the run worker threads."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop`` (the server's) for wakeups."""
        self._loop = loop

    def register(self, run_id: str) -> asyncio.Event:
        """Return an event set whenever the run gets a new event in this process."""
        event = asyncio.Event()
        with self._lock:
            self._waiters[run_id].add(event)
        return event

    def unregister(self, run_id: str, event: asyncio.Event) -> None:
        """Stop waking ``event``."""
        with self._lock:
            waiters = self._waiters.get(run_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[run_id]

    def notify(self, run_id: str) -> None:
        """Wake the run's streams (thread-safe; a no-op without waiters or a loop)."""
        with self._lock:
            waiters = list(self._waiters.get(run_id, ()))
        loop = self._loop
        if waiters and loop is not None and not loop.is_closed():
            for event in waiters:
                loop.call_soon_threadsafe(event.set)
