"""Graph nodes: guard pipeline, agent, tool guardrails, escalation, output and observability."""

from __future__ import annotations

from typing import TYPE_CHECKING

from graph.lazy import lazy_exports

if TYPE_CHECKING:
    from nodes.agent import CallModel, RouteAfterModel
    from nodes.audit import AnchorScheduler, AuditEvent, AuditLog
    from nodes.audit_key import APP_ROLE, AuditKey, AuditKeyError, load_audit_key
    from nodes.input_guard import InputGuard
    from nodes.metrics import init_metrics
    from nodes.output_guard import OutputGuard
    from nodes.tool_guard import ToolGuard

__all__ = [
    "APP_ROLE",
    "AnchorScheduler",
    "AuditEvent",
    "AuditKey",
    "AuditKeyError",
    "AuditLog",
    "CallModel",
    "InputGuard",
    "OutputGuard",
    "RouteAfterModel",
    "ToolGuard",
    "init_metrics",
    "load_audit_key",
]

# Loaded on first use (PEP 562), so importing the package stays cheap and free of cycles.
_EXPORTS = {
    "APP_ROLE": "nodes.audit_key",
    "AnchorScheduler": "nodes.audit",
    "AuditEvent": "nodes.audit",
    "AuditKey": "nodes.audit_key",
    "AuditKeyError": "nodes.audit_key",
    "AuditLog": "nodes.audit",
    "CallModel": "nodes.agent",
    "InputGuard": "nodes.input_guard",
    "OutputGuard": "nodes.output_guard",
    "RouteAfterModel": "nodes.agent",
    "ToolGuard": "nodes.tool_guard",
    "init_metrics": "nodes.metrics",
    "load_audit_key": "nodes.audit_key",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)
