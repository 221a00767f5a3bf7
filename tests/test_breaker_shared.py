"""The circuit breaker counts outages only and is shared per tool across processes (issue 7)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from graph.db import open_pool
from graph.policy import ResilienceGuardrail
from nodes.guardrails.resilience import (
    BreakerOpenError,
    BreakerRegistry,
    BreakerState,
    ResilientCaller,
    ServiceUnavailableError,
    is_infrastructure_failure,
)
from tests.conftest import ROOT
from tests.helpers import FakeClock

pytestmark = pytest.mark.postgres
TOOL = "update_reservation_baggages"


def _config(**kw: object) -> ResilienceGuardrail:
    base: dict[str, object] = dict(
        type="guardrail.resilience", timeout="50ms", retries=0, backoff="1ms", maxBackoff="1ms",
        breakerThreshold=0.5, breakerWindow=4, breakerMinCalls=2, cooldown="30s",
    )
    base.update(kw)
    return ResilienceGuardrail.model_validate(base)


@pytest.fixture
def two_pools(database_url: str) -> Iterator[tuple[object, object]]:
    a, b = open_pool(database_url, max_size=20), open_pool(database_url, max_size=20)
    yield a, b
    a.close()
    b.close()


def _hang_until(release: threading.Event):
    def call() -> None:
        release.wait()  # a backend that does not answer within the attempt timeout

    return call


def test_an_outage_seen_by_one_process_opens_the_breaker_for_the_other(two_pools):
    """Two registries on two pools: timeouts through A open the breaker B uses."""
    clock, cfg, release = FakeClock(), _config(), threading.Event()
    a = BreakerRegistry(pool=two_pools[0], clock=clock)
    b = BreakerRegistry(pool=two_pools[1], clock=clock)
    try:
        for _ in range(2):
            with pytest.raises(ServiceUnavailableError):
                ResilientCaller(config=cfg, breaker=a.get(TOOL, cfg)).call(_hang_until(release))
    finally:
        release.set()
    assert b.get(TOOL, cfg).state is BreakerState.OPEN
    assert b.states()[TOOL] == "open"
    called = []
    with pytest.raises(BreakerOpenError):
        ResilientCaller(config=cfg, breaker=b.get(TOOL, cfg)).call(lambda: called.append(1))
    assert called == []  # B fails fast without touching the backend


def test_a_bug_in_a_tool_does_not_open_the_breaker_but_timeouts_do(two_pools):
    """A TypeError is a bug, not an outage; two timeouts out of two are."""
    clock, cfg, release = FakeClock(), _config(), threading.Event()
    a = BreakerRegistry(pool=two_pools[0], clock=clock)
    b = BreakerRegistry(pool=two_pools[1], clock=clock)

    def buggy() -> None:
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    for _ in range(6):
        # A bug is reported as itself (not "unavailable") and is not retried.
        with pytest.raises(TypeError):
            ResilientCaller(config=cfg, breaker=a.get(TOOL, cfg)).call(buggy)
    assert b.get(TOOL, cfg).state is BreakerState.CLOSED
    try:
        for _ in range(2):
            with pytest.raises(ServiceUnavailableError):
                ResilientCaller(config=cfg, breaker=a.get(TOOL, cfg)).call(_hang_until(release))
    finally:
        release.set()
    assert b.get(TOOL, cfg).state is BreakerState.OPEN


def test_the_classification_of_failures():
    """Outages: timeouts, connections, Postgres operational errors, the backend's unavailable."""
    assert is_infrastructure_failure(TimeoutError())
    assert is_infrastructure_failure(ConnectionRefusedError())
    assert is_infrastructure_failure(psycopg.OperationalError("server closed the connection"))
    assert is_infrastructure_failure(ServiceUnavailableError("backend down"))
    wrapped = RuntimeError("write failed")
    wrapped.__cause__ = ConnectionResetError()
    assert is_infrastructure_failure(wrapped)
    for bug in (TypeError(), KeyError("x"), ValueError(), psycopg.errors.UniqueViolation(),
                FileNotFoundError()):
        assert not is_infrastructure_failure(bug), bug


def test_one_half_open_probe_across_processes_and_a_dead_probe_is_replaced(two_pools):
    """After the cool-down, 16 racing callers on two pools: exactly one probe goes through."""
    clock, cfg = FakeClock(), _config()
    regs = [BreakerRegistry(pool=p, clock=clock) for p in two_pools]
    breakers = [r.get(TOOL, cfg) for r in regs]
    breakers[0].record(False)
    breakers[1].record(False)
    assert breakers[0].state is BreakerState.OPEN
    with pytest.raises(BreakerOpenError):
        breakers[1].before_call()  # still cooling down
    clock.now += cfg.cooldown
    assert breakers[1].state is BreakerState.HALF_OPEN

    barrier = threading.Barrier(16)

    def race(i: int) -> bool:
        barrier.wait()
        try:
            breakers[i % 2].before_call()
        except BreakerOpenError:
            return False
        return True

    with ThreadPoolExecutor(16) as pool:
        admitted = list(pool.map(race, range(16)))
    assert admitted.count(True) == 1
    # The probe's process dies without recording: once its lease expires, another may probe.
    with pytest.raises(BreakerOpenError):
        breakers[0].before_call()
    clock.now += cfg.cooldown
    breakers[0].before_call()
    breakers[0].record(True)
    assert breakers[1].state is BreakerState.CLOSED and regs[1].states()[TOOL] == "closed"


def test_a_separate_process_sees_the_open_breaker(database_url):
    """A real second process, on the database's own clock, fails fast on the shared breaker."""
    cfg = _config(cooldown="1h")
    pool = open_pool(database_url, max_size=2)
    try:
        breaker = BreakerRegistry(pool=pool).get(TOOL, cfg)
        breaker.record(False)
        breaker.record(False)
        assert breaker.state is BreakerState.OPEN
    finally:
        pool.close()
    script = textwrap.dedent(f"""
        from graph.db import open_pool
        from graph.policy import ResilienceGuardrail
        from nodes.guardrails.resilience import BreakerOpenError, BreakerRegistry
        cfg = ResilienceGuardrail.model_validate({cfg.model_dump(by_alias=True)!r})
        pool = open_pool({database_url!r}, max_size=2)
        breaker = BreakerRegistry(pool=pool).get({TOOL!r}, cfg)
        try:
            breaker.before_call()
            print(breaker.state.value, "admitted")
        except BreakerOpenError:
            print(breaker.state.value, "refused")
        pool.close()
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=dict(os.environ),
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["open", "refused"]
