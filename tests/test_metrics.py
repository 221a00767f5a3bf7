"""OpenTelemetry metrics: decisions by layer and action, tool outcomes, payments, breaker state."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from nodes.metrics import init_metrics
from tests.helpers import USER, bags_call, make_app, make_services, summarise

pytestmark = pytest.mark.postgres


def _points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict, float]]]:
    out: dict[str, list[tuple[dict, float]]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    out.setdefault(metric.name, []).append(
                        (dict(p.attributes), getattr(p, "value", getattr(p, "count", 0))))
    return out


def test_a_turn_is_counted(database_url):
    reader = init_metrics(reader=InMemoryMetricReader())
    if not isinstance(reader, InMemoryMetricReader):
        pytest.fail("metrics were initialised with another reader earlier in this process")
    before = _points(reader)
    services = make_services(database_url)
    try:
        app, _ = make_app(services, [bags_call(4, 3), summarise])
        thread = app.new_thread(user_id=USER)
        gate = app.send(thread_id=thread, user_id=USER, text="add 3 bags to VAAOXJ").pending[0]
        app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=gate.id, action="confirm")
        points = _points(reader)
    finally:
        services.close()

    def total(name, **attrs):
        return sum(v for a, v in points.get(name, []) if all(a.get(k) == x for k, x in attrs.items())) - sum(
            v for a, v in before.get(name, []) if all(a.get(k) == x for k, x in attrs.items()))

    assert total("airlock_guard_decisions", stage="input", layer="prefilter", action="allow") >= 1
    assert total("airlock_guard_latency_ms", layer="classifiers") >= 1
    assert total("airlock_tool_calls", tool="update_reservation_baggages", status="captured") == 1
    assert total("payments_total", status="captured") == 1
    states = [a for a, _ in points.get("airlock_breaker_state", [])]
    assert any(a["tool"] == "update_reservation_baggages" and a["state"] == "closed" for a in states)
