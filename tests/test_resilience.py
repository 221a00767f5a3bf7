"""The payment backend failing: fallback within the bound, fast failure while open, recovery."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from graph.policy import ResilienceGuardrail
from nodes.guardrails.resilience import (
    BreakerOpenError,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    ResilientCaller,
    ServiceUnavailableError,
)
from tests.helpers import (
    RES,
    USER,
    FakeClock,
    bags_call,
    ledger_rows,
    make_app,
    make_services,
    summarise,
    tool_payloads,
)
from tools.airline import POLICY_PATH
from tools.airline.domain import AirlineDomain

FALLBACK = "The payment service is unavailable. Please try again in a few minutes."


class FlakyDomain(AirlineDomain):
    """The real airline domain whose writes can be made to hang or fail."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.mode = "ok"
        self.write_calls = 0
        self.release = threading.Event()  # a hung backend answers only when the test ends
        self._lock = threading.Lock()

    def execute(self, tool, args, *, idempotency_key, guard=None):
        if self.tools[tool].write:
            with self._lock:
                self.write_calls += 1
            if self.mode == "hang":
                self.release.wait()
                raise TimeoutError("backend hung")
            if self.mode == "error":
                raise ConnectionError("payment backend refused the connection")
        return super().execute(tool, args, idempotency_key=idempotency_key, guard=guard)


def _fast_policy(tmp_path: Path) -> Path:
    data = yaml.safe_load(POLICY_PATH.read_text())
    for chain in data["tools"].values():
        for guard in chain:
            if guard["type"] == "guardrail.resilience":
                guard.update(timeout="300ms", retries=2, backoff="10ms", maxBackoff="20ms",
                             breakerThreshold=0.5, breakerWindow=4, breakerMinCalls=3, cooldown="1s",
                             fallbackMessage=FALLBACK)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.postgres
@pytest.mark.slow
def test_backend_failures_give_fallback_then_fail_fast_then_recover(database_url, tmp_path):
    holder: dict[str, FlakyDomain] = {}

    def factory(*, pool):
        holder["d"] = FlakyDomain(backend=AirlineDomain.from_pool(pool=pool).backend)
        return holder["d"]

    services = make_services(database_url, policy=_fast_policy(tmp_path), domain_factory=factory)
    domain = holder["d"]
    try:
        script = []
        for i in range(4):
            script += [bags_call(4, 3, f"call_{i}"), summarise]
        # The breaker's cool-down runs on a clock the test moves instead of sleeping.
        clock = FakeClock()
        services.breakers = BreakerRegistry(pool=services.pool, clock=clock)
        app, _ = make_app(services, script)
        thread = app.new_thread(user_id=USER)

        def attempt():
            gate = app.send(thread_id=thread, user_id=USER, text="add 3 bags to VAAOXJ").pending[0]
            result = app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=gate.id, action="confirm")
            return tool_payloads(result.messages)[-1]

        # 1. Hanging backend: 3 attempts of 300 ms plus tiny backoffs, then the fallback.
        domain.mode = "hang"
        payload = attempt()
        assert payload == {"status": "unavailable", "message": FALLBACK, "executed": False}
        assert domain.write_calls == 3
        assert services.breakers.states()["update_reservation_baggages"] == "open"

        # 2. While open: fail fast, the backend is not touched.
        payload = attempt()
        assert payload["status"] == "unavailable" and domain.write_calls == 3

        # 3. After the cool-down a half-open probe goes through; success closes the breaker.
        domain.mode = "ok"
        clock.now += 1.05
        payload = attempt()
        assert payload["status"] == "captured" and domain.write_calls == 4
        assert services.breakers.states()["update_reservation_baggages"] == "closed"
        assert len(ledger_rows(services, RES)) == 1
    finally:
        domain.release.set()
        services.close()


def _config(**kw):
    base = dict(type="guardrail.resilience", timeout="200ms", retries=2, backoff="5ms", maxBackoff="10ms",
                breakerThreshold=0.5, breakerWindow=4, breakerMinCalls=2, cooldown="200ms")
    base.update(kw)
    return ResilienceGuardrail.model_validate(base)


def test_errors_are_retried_then_fallback():
    cfg = _config()
    breaker = CircuitBreaker(threshold=1.0, window=10, min_calls=10, cooldown=1)
    calls = []

    def boom():
        calls.append(1)
        raise ConnectionError("down")

    with pytest.raises(ServiceUnavailableError):
        ResilientCaller(config=cfg, breaker=breaker).call(boom)
    assert len(calls) == 3


def test_domain_errors_are_not_retried_and_do_not_trip_the_breaker():
    class Refused(Exception):
        pass

    breaker = CircuitBreaker(threshold=0.5, window=4, min_calls=2, cooldown=1)
    calls = []

    def refuse():
        calls.append(1)
        raise Refused("not enough balance")

    caller = ResilientCaller(config=_config(), breaker=breaker, non_retryable=(Refused,))
    for _ in range(3):
        with pytest.raises(Refused):
            caller.call(refuse)
    assert len(calls) == 3 and breaker.state is BreakerState.CLOSED


def test_half_open_allows_one_probe_and_failure_reopens():
    now = [0.0]
    breaker = CircuitBreaker(threshold=0.5, window=4, min_calls=2, cooldown=10, clock=lambda: now[0])
    breaker.record(False)
    breaker.record(False)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(BreakerOpenError):
        breaker.before_call()
    now[0] = 10.0
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()  # the probe
    with pytest.raises(BreakerOpenError):
        breaker.before_call()  # a second caller during the probe fails fast
    breaker.record(False)
    assert breaker.state is BreakerState.OPEN
    now[0] = 20.0
    breaker.before_call()
    breaker.record(True)
    assert breaker.state is BreakerState.CLOSED
