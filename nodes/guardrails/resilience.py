"""``guardrail.resilience``: per-attempt timeout, retries with jittered backoff, circuit breaker.

When every attempt fails, or the breaker is open, the caller gets
:class:`ServiceUnavailableError` and returns the policy's fallback message as the
tool result. Domain errors (the domain's ``error_type``) are not retried:
the backend answered, the request was wrong.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
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
    "INFRASTRUCTURE_ERRORS",
    "ResilientCaller",
    "ServiceUnavailableError",
    "is_infrastructure_failure",
]

T = TypeVar("T")
log = logging.getLogger(__name__)


class BreakerState(StrEnum):
    """Circuit breaker states."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class ServiceUnavailableError(AirlockError, RuntimeError):
    """The service could not be reached after retries, or the breaker is open."""


class BreakerOpenError(ServiceUnavailableError):
    """Raised without calling the service while the breaker is open."""


class _AttemptTimeoutError(AirlockError, TimeoutError):
    """One attempt exceeded the per-attempt timeout (retried)."""


#: What counts against a breaker: the service could not be reached or did not answer in time.
#: Timeouts (the per-attempt timeout included), refused or dropped connections, Postgres
#: operational errors (server gone, pool exhausted, statement timeout) and the backend's own
#: "unavailable". Everything else (a TypeError in a tool, a domain refusal) is a bug or a
#: wrong request, not an outage, and never opens the breaker.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionError,
    psycopg.OperationalError,
    PoolTimeout,
    ServiceUnavailableError,
)


def is_infrastructure_failure(error: BaseException) -> bool:
    """Return whether ``error`` (or an error it was explicitly raised from) is an outage."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, INFRASTRUCTURE_ERRORS):
            return True
        seen.add(id(current))
        current = current.__cause__  # `raise X from Y` only: a bug while handling is still a bug
    return False


@dataclass(frozen=True, slots=True, kw_only=True)
class _Record:
    """One breaker's state; times are seconds on the breaker's clock."""

    state: BreakerState = BreakerState.CLOSED
    outcomes: tuple[bool, ...] = ()
    open_until: float = 0.0
    probe_until: float = 0.0  # lease of the half-open probe; 0 when none is in flight


@dataclass(frozen=True, slots=True, kw_only=True)
class _Rules:
    threshold: float
    window: int
    min_calls: int
    cooldown: float

    def visible(self, rec: _Record, now: float) -> BreakerState:
        if rec.state is BreakerState.OPEN and now >= rec.open_until:
            return BreakerState.HALF_OPEN
        return rec.state

    def admit(self, rec: _Record, now: float) -> tuple[_Record, str]:
        """Return the new record and "" when a call may go, else why it may not."""
        if rec.state is BreakerState.OPEN:
            if now < rec.open_until:
                return rec, "circuit open"
            rec = replace(rec, state=BreakerState.HALF_OPEN, probe_until=0.0)
        if rec.state is BreakerState.HALF_OPEN:
            if rec.probe_until > now:
                return rec, "circuit half-open; probe in flight"
            # One probe; its lease lets another process probe if this one dies mid-call.
            return replace(rec, probe_until=now + max(self.cooldown, 1.0)), ""
        return rec, ""

    def apply(self, rec: _Record, now: float, outcome: bool | None) -> _Record:
        """Return the record after an attempt: True ok, False outage, None not counted."""
        if rec.state is BreakerState.HALF_OPEN:
            if outcome is None:
                return replace(rec, probe_until=0.0)  # not an outage: let the next call probe
            if outcome:
                return _Record()
            return _Record(state=BreakerState.OPEN, open_until=now + self.cooldown)
        if rec.state is BreakerState.OPEN or outcome is None:
            return rec  # a call admitted before the breaker opened, or a bug: not counted
        outcomes = (*rec.outcomes, outcome)[-self.window:]
        failures = outcomes.count(False)
        if len(outcomes) >= self.min_calls and failures / len(outcomes) >= self.threshold:
            return _Record(state=BreakerState.OPEN, open_until=now + self.cooldown)
        return replace(rec, outcomes=outcomes)


class _MemoryStore:
    """Breaker state in this process only (tests and tools without a database)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._rec = _Record()
        self._lock = threading.Lock()
        self._clock = clock

    def read(self) -> tuple[_Record, float]:
        with self._lock:
            return self._rec, self._clock()

    def update(self, change: Callable[[_Record, float], tuple[_Record, T]]) -> T:
        with self._lock:
            self._rec, result = change(self._rec, self._clock())
            return result


_SELECT = "SELECT state, outcomes, open_until, probe_until, {now} AS now FROM circuit_breakers WHERE name = %s"
_DB_NOW = "extract(epoch FROM clock_timestamp())::float8"


class _PostgresStore:
    """Breaker state in ``circuit_breakers`` (migration 006), shared by every process.

    Each change runs in one transaction holding the row lock (``SELECT … FOR UPDATE``), so
    the window, the cool-down and the single half-open probe hold across processes. Times
    are on the database's clock unless a clock is injected, so hosts need not agree.
    """

    def __init__(self, pool: ConnectionPool, name: str, clock: Callable[[], float] | None) -> None:
        self._pool, self._name, self._clock = pool, name, clock
        with pool.connection() as conn:
            conn.execute(
                "INSERT INTO circuit_breakers (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,)
            )

    def _row(self, conn: Any, *, lock: bool) -> tuple[_Record, float]:
        now_sql = "%s::float8" if self._clock is not None else _DB_NOW
        query = _SELECT.format(now=now_sql) + (" FOR UPDATE" if lock else "")
        params = (self._clock(), self._name) if self._clock is not None else (self._name,)
        row = conn.execute(query, params).fetchone()
        if row is None:  # the row is created with the breaker; a wiped table starts closed
            conn.execute(
                "INSERT INTO circuit_breakers (name) VALUES (%s) ON CONFLICT DO NOTHING", (self._name,)
            )
            return self._row(conn, lock=lock)
        rec = _Record(
            state=BreakerState(row["state"]), outcomes=tuple(row["outcomes"]),
            open_until=float(row["open_until"]), probe_until=float(row["probe_until"]),
        )
        return rec, float(row["now"])

    def read(self) -> tuple[_Record, float]:
        with self._pool.connection() as conn:
            return self._row(conn, lock=False)

    def update(self, change: Callable[[_Record, float], tuple[_Record, T]]) -> T:
        with self._pool.connection() as conn, conn.transaction():
            rec, now = self._row(conn, lock=True)
            new, result = change(rec, now)
            if new != rec:
                conn.execute(
                    "UPDATE circuit_breakers SET state = %s, outcomes = %s, open_until = %s, "
                    "probe_until = %s, updated_at = now() WHERE name = %s",
                    (new.state.value, list(new.outcomes), new.open_until, new.probe_until,
                     self._name),
                )
            return result


class CircuitBreaker:
    """A failure-ratio breaker over a sliding window of recent attempts.

    Opens when at least ``min_calls`` attempts are in the window and the failure ratio
    reaches ``threshold``; after ``cooldown`` seconds one half-open probe is let
    through: success closes the breaker, an outage opens it again. Only infrastructure
    failures count (see :data:`INFRASTRUCTURE_ERRORS`); a bug neither opens nor closes it.
    With a ``pool`` the state lives in Postgres and is shared by every process (one row per
    ``name``); without one it is this process's own.
    """

    def __init__(
        self, *, threshold: float, window: int, min_calls: int, cooldown: float,
        clock: Callable[[], float] | None = None, pool: ConnectionPool | None = None,
        name: str = "",
    ) -> None:
        self._rules = _Rules(threshold=threshold, window=window, min_calls=min_calls, cooldown=cooldown)
        self._store: _MemoryStore | _PostgresStore = (
            _PostgresStore(pool, name, clock) if pool is not None
            else _MemoryStore(clock or time.monotonic)
        )

    @property
    def state(self) -> BreakerState:
        """Return the current state (OPEN turns HALF_OPEN once the cool-down passed)."""
        rec, now = self._store.read()
        return self._rules.visible(rec, now)

    def before_call(self) -> None:
        """Raise :class:`BreakerOpenError` unless a call may go through now.

        If the shared state cannot be read, the call is refused (fail closed).
        """
        try:
            reason = self._store.update(self._rules.admit)
        except psycopg.Error as exc:
            raise BreakerOpenError("circuit state unavailable") from exc
        if reason:
            raise BreakerOpenError(reason)

    def record(self, success: bool, *, error: BaseException | None = None) -> None:
        """Record an attempt's outcome and move between states.

        A failure counts only when it is an infrastructure failure. The error is ``error``
        or, when called from an ``except`` block without one, the exception being handled;
        ``record(False)`` outside any ``except`` counts as an outage.
        """
        outcome: bool | None = True
        if not success:
            failure = error if error is not None else sys.exc_info()[1]
            outcome = False if failure is None or is_infrastructure_failure(failure) else None
        try:
            self._store.update(lambda rec, now: (self._rules.apply(rec, now, outcome), None))
        except psycopg.Error:
            # Never turn the call's own result into a failure because bookkeeping failed.
            log.warning("could not record a circuit breaker outcome", exc_info=True)


class BreakerRegistry:
    """One breaker per service name, created from the policy on first use.

    With a ``pool`` every breaker is shared through Postgres by all processes on that
    database: the window of outcomes, the open state and its cool-down, and the single
    half-open probe. Without one, breakers are per process.
    """

    def __init__(
        self, *, clock: Callable[[], float] | None = None, pool: ConnectionPool | None = None
    ) -> None:
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()
        self._clock, self._pool = clock, pool

    def get(self, name: str, config: ResilienceGuardrail) -> CircuitBreaker:
        """Return the breaker for ``name``."""
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = CircuitBreaker(
                    threshold=config.breaker_threshold, window=config.breaker_window,
                    min_calls=config.breaker_min_calls, cooldown=config.cooldown, clock=self._clock,
                    pool=self._pool, name=name,
                )
                self._breakers[name] = breaker
            return breaker

    def states(self) -> dict[str, str]:
        """Return every breaker's state, for metrics and the UI (all shared ones with a pool)."""
        if self._pool is not None:
            rules = _Rules(threshold=1.0, window=1, min_calls=1, cooldown=0.0)
            now_sql = "%s::float8" if self._clock is not None else _DB_NOW
            params = (self._clock(),) if self._clock is not None else ()
            try:
                with self._pool.connection() as conn:
                    rows: list[Any] = conn.execute(
                        f"SELECT name, state, open_until, {now_sql} AS now FROM circuit_breakers "
                        "ORDER BY name", params,
                    ).fetchall()
            except psycopg.Error:  # a closed pool or an unreachable server: nothing to report
                log.debug("circuit breaker states unavailable", exc_info=True)
                return {}
            return {
                r["name"]: rules.visible(
                    _Record(state=BreakerState(r["state"]), open_until=float(r["open_until"])),
                    float(r["now"]),
                ).value
                for r in rows
            }
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
        except Exception as exc:
            self._breaker.record(False, error=exc)  # only outages count; a bug neither way
            raise
        self._breaker.record(True)
        return value

    def call(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` with retries; raise ServiceUnavailableError when it cannot succeed."""
        cfg = self._config
        retrying = Retrying(
            stop=stop_after_attempt(cfg.retries + 1),
            wait=wait_exponential_jitter(multiplier=cfg.backoff, max=cfg.max_backoff, jitter=cfg.backoff),
            # Only outages are retried: a refused request or a bug would fail the same way again
            # (and is reported as itself, not as "the service is unavailable").
            retry=retry_if_exception(
                lambda e: is_infrastructure_failure(e) and not isinstance(e, (BreakerOpenError, *self._non_retryable))
            ),
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
        return result

    def bound_seconds(self) -> float:
        """Return the worst-case time before the fallback is returned."""
        cfg = self._config
        waits = sum(min(cfg.max_backoff, cfg.backoff * 2**i) + cfg.backoff for i in range(cfg.retries))
        return (cfg.retries + 1) * cfg.timeout + waits
