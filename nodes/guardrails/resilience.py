"""``guardrail.resilience``: per-attempt timeout, retries with jittered backoff, circuit breaker.

When every attempt fails, or the breaker is open, the caller gets
:class:`ServiceUnavailableError` and returns the policy's fallback message as the
tool result. Domain errors (:class:`tools.airline.errors.ToolError`) are not retried:
the backend answered, the request was wrong.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from enum import StrEnum
from typing import Any, TypeVar

from tenacity import (
    RetryError,
    Retrying,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from graph.errors import AirlockError
from graph.policy import ResilienceGuardrail

__all__ = [
    "BreakerOpenError",
    "BreakerRegistry",
    "BreakerState",
    "CircuitBreaker",
    "ResilientCaller",
    "ServiceUnavailableError",
]

T = TypeVar("T")


class BreakerState(StrEnum):
    """Circuit breaker states."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class ServiceUnavailableError(AirlockError, RuntimeError):
    """The service could not be reached after retries, or the breaker is open."""


class BreakerOpenError(ServiceUnavailableError):
    """Raised without calling the service while the breaker is open."""


class _AttemptTimeoutError(TimeoutError):
    """One attempt exceeded the per-attempt timeout (retried)."""


class CircuitBreaker:
    """A failure-ratio breaker over a sliding window of recent attempts.

    Opens when at least ``min_calls`` attempts are in the window and the failure ratio
    reaches ``threshold``; after ``cooldown`` seconds one half-open probe is let
    through: success closes the breaker, failure opens it again.
    """

    def __init__(
        self, *, threshold: float, window: int, min_calls: int, cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold, self._min_calls, self._cooldown = threshold, min_calls, cooldown
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        """Return the current state (OPEN turns HALF_OPEN once the cool-down passed)."""
        with self._lock:
            if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self._cooldown:
                return BreakerState.HALF_OPEN
            return self._state

    def before_call(self) -> None:
        """Raise :class:`BreakerOpenError` unless a call may go through now."""
        with self._lock:
            if self._state is BreakerState.OPEN:
                if self._clock() - self._opened_at < self._cooldown:
                    raise BreakerOpenError("circuit open")
                self._state = BreakerState.HALF_OPEN
                self._probe_in_flight = False
            if self._state is BreakerState.HALF_OPEN:
                if self._probe_in_flight:
                    raise BreakerOpenError("circuit half-open; probe in flight")
                self._probe_in_flight = True

    def record(self, success: bool) -> None:
        """Record an attempt's outcome and move between states."""
        with self._lock:
            if self._state is BreakerState.HALF_OPEN:
                self._probe_in_flight = False
                if success:
                    self._state = BreakerState.CLOSED
                    self._outcomes.clear()
                else:
                    self._trip()
                return
            self._outcomes.append(success)
            failures = self._outcomes.count(False)
            if (
                len(self._outcomes) >= self._min_calls
                and failures / len(self._outcomes) >= self._threshold
            ):
                self._trip()

    def _trip(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._outcomes.clear()


class BreakerRegistry:
    """One breaker per service name, created from the policy on first use."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def get(self, name: str, config: ResilienceGuardrail) -> CircuitBreaker:
        """Return the breaker for ``name``."""
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = CircuitBreaker(
                    threshold=config.breaker_threshold, window=config.breaker_window,
                    min_calls=config.breaker_min_calls, cooldown=config.cooldown, clock=self._clock,
                )
                self._breakers[name] = breaker
            return breaker

    def states(self) -> dict[str, str]:
        """Return every breaker's state, for metrics and the UI."""
        with self._lock:
            items = list(self._breakers.items())
        return {name: b.state.value for name, b in items}


# Attempts run in worker threads so a hung backend cannot hold the graph past the timeout.
_EXECUTOR = ThreadPoolExecutor(max_workers=32, thread_name_prefix="airlock-tool")


class ResilientCaller:
    """Run a call under a resilience config and a breaker."""

    def __init__(
        self, *, config: ResilienceGuardrail, breaker: CircuitBreaker,
        non_retryable: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._config, self._breaker, self._non_retryable = config, breaker, non_retryable

    def _attempt(self, fn: Callable[[], T]) -> T:
        self._breaker.before_call()
        future = _EXECUTOR.submit(fn)
        try:
            value = future.result(timeout=self._config.timeout)
        except FutureTimeout:
            self._breaker.record(False)
            # The attempt keeps running in its thread; the idempotency key passed to the
            # backend makes a late success harmless (it cannot apply twice).
            raise _AttemptTimeoutError(f"attempt timed out after {self._config.timeout}s") from None
        except self._non_retryable:
            self._breaker.record(True)  # the service answered; the request was refused
            raise
        except Exception:
            self._breaker.record(False)
            raise
        self._breaker.record(True)
        return value

    def call(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` with retries; raise ServiceUnavailableError when it cannot succeed."""
        cfg = self._config
        retrying = Retrying(
            stop=stop_after_attempt(cfg.retries + 1),
            wait=wait_exponential_jitter(multiplier=cfg.backoff, max=cfg.max_backoff, jitter=cfg.backoff),
            retry=retry_if_not_exception_type((BreakerOpenError, *self._non_retryable)),
            reraise=False,
        )
        try:
            result: Any = retrying(self._attempt, fn)
        except BreakerOpenError:
            raise
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise ServiceUnavailableError(
                f"service failed after {cfg.retries + 1} attempts: {type(last).__name__}"
            ) from last
        return result  # type: ignore[no-any-return]

    def bound_seconds(self) -> float:
        """Return the worst-case time before the fallback is returned."""
        cfg = self._config
        waits = sum(min(cfg.max_backoff, cfg.backoff * 2**i) + cfg.backoff for i in range(cfg.retries))
        return (cfg.retries + 1) * cfg.timeout + waits
