"""Keep the PII analyzer's results per text and setting, so a turn analyses each text once."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from presidio_analyzer import RecognizerResult


@dataclass(frozen=True, slots=True)
class _Analysis:
    """What the analyzer found in one text under one analysis setting, before the allow lists.

    Offsets, types and scores only (no text): what :class:`_AnalysisCache` keeps.
    """

    #: Per chunk: its offset in the text, the analyzer's results in it and the language its NER read.
    chunks: tuple[tuple[int, tuple[RecognizerResult, ...], str], ...]
    ner_ran: bool
    ner_unread: int = 0


class _AnalysisCache:
    """A bounded, thread-safe LRU of :class:`_Analysis` by (text digest, analysis setting).

    A turn shows the same text to several PII steps (the checkpoint scrubber and the input
    guard see the same message; a review masks the same arguments for its request and its
    record): each analyses it once. The key is a SHA-256 digest, the value offsets and
    scores, so the cache keeps no customer text. The allow lists are applied on every use
    (they only remove spans), so layers that differ only in what they allow share an analysis.
    """

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        #: Callers now waiting for another thread's analysis of the same text.
        self.waiting = 0
        self._items: OrderedDict[tuple[Any, ...], _Analysis] = OrderedDict()
        self._lock = threading.Lock()
        self._running: dict[tuple[Any, ...], threading.Event] = {}

    def get_or_analyse(self, key: tuple[Any, ...], analyse: Callable[[], _Analysis]) -> _Analysis:
        """Return the analysis under ``key``, running ``analyse`` only if no thread has or is.

        The checkpoint scrubber and the input guard meet the same message at the same moment
        (LangGraph writes the input checkpoint while the first node runs): the second waits for
        the first's analysis instead of running its own. If that analysis fails (a layer's
        deadline), a waiter runs its own.
        """
        while True:
            with self._lock:
                found = self._items.get(key)
                if found is not None:
                    self.hits += 1
                    self._items.move_to_end(key)
                    return found
                running = self._running.get(key)
                if running is None:
                    self.misses += 1
                    mine = self._running[key] = threading.Event()
                    break
                self.waiting += 1
            try:
                running.wait()
            finally:
                with self._lock:
                    self.waiting -= 1
        analysis: _Analysis | None = None
        try:
            analysis = analyse()
            return analysis
        finally:
            with self._lock:
                if analysis is not None:
                    self._items[key] = analysis
                    while len(self._items) > self.size:
                        self._items.popitem(last=False)
                del self._running[key]
            mine.set()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0
