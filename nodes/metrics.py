"""OpenTelemetry metrics, exported for Prometheus.

Instruments are created on the global meter; until :func:`init_metrics` installs a
provider they are no-ops, so library users and tests pay nothing.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

__all__ = ["init_metrics", "record_decisions", "record_notification", "record_tool", "watch_breakers"]

log = logging.getLogger(__name__)
_meter = metrics.get_meter("airlock")
_decisions = _meter.create_counter(
    "airlock_guard_decisions", unit="1", description="Guard decisions by stage, layer and action"
)
_latency = _meter.create_histogram(
    "airlock_guard_latency_ms", unit="ms", description="Latency of each guard layer"
)
_tools = _meter.create_counter("airlock_tool_calls", unit="1", description="Guarded tool calls by tool and outcome")
_payments = _meter.create_counter(
    "payments_total", unit="1", description="Money-moving tool results by status (captured, deduplicated, ...)"
)
_notifications = _meter.create_counter(
    "airlock_notifications", unit="1",
    description="Outbox delivery attempts by kind, channel and outcome (sent, pending = will retry, dead, skipped)",
)
_BREAKER_VALUE = {"closed": 0, "half_open": 1, "open": 2}
_breaker_sources: list[weakref.WeakMethod[Callable[[], Mapping[str, str]]]] = []
_lock = threading.Lock()
_installed: list[Any] = []


def _observe_breakers(options: CallbackOptions) -> Iterable[Observation]:
    for ref in list(_breaker_sources):
        source = ref()
        if source is None:  # the services that owned these breakers are gone
            _breaker_sources.remove(ref)
            continue
        for name, state in source().items():
            yield Observation(_BREAKER_VALUE.get(state, -1), {"tool": name, "state": state})


_meter.create_observable_gauge(
    "airlock_breaker_state", callbacks=[_observe_breakers], description="0 closed, 1 half-open, 2 open"
)


def init_metrics(*, port: int | None = None, reader: Any = None) -> Any:
    """Install a meter provider once: Prometheus reader (and HTTP server on ``port``), or ``reader``."""
    from opentelemetry.sdk.metrics import MeterProvider

    with _lock:
        if _installed:
            return _installed[0]
        if reader is None:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader

            reader = PrometheusMetricReader()
            if port:
                from prometheus_client import start_http_server

                start_http_server(port, addr="127.0.0.1")
                log.info("Prometheus metrics on http://127.0.0.1:%s/metrics", port)
        provider = MeterProvider(metric_readers=[reader])
        metrics.set_meter_provider(provider)
        _installed.append(reader)
        return reader


def record_decisions(decisions: Iterable[Mapping[str, Any]]) -> None:
    """Count guard decisions and their latency."""
    for d in decisions:
        attrs = {"stage": str(d.get("stage", "")), "layer": str(d.get("layer", "")),
                 "action": str(d.get("action", ""))}
        _decisions.add(1, attrs)
        if "latency_ms" in d:
            _latency.record(float(d["latency_ms"]), {"stage": attrs["stage"], "layer": attrs["layer"]})


def record_tool(tool: str, status: str, content: Mapping[str, Any]) -> None:
    """Count a tool outcome; money-moving results also count in ``payments_total``."""
    _tools.add(1, {"tool": tool, "status": status})
    if content.get("charge_ids") or status in {"captured", "refunded"}:
        _payments.add(1, {"status": status, "tool": tool})


def record_notification(kind: str, channel: str, outcome: str) -> None:
    """Count one outbox delivery attempt (alert on ``outcome="dead"``)."""
    _notifications.add(1, {"kind": kind, "channel": channel, "outcome": outcome})


def watch_breakers(states: Callable[[], Mapping[str, str]]) -> None:
    """Report the breakers of a registry (a bound ``states`` method) as a gauge; held weakly."""
    _breaker_sources.append(weakref.WeakMethod(states))
