"""airlock graph package: state, runtime context, policy, persistence and the graph builder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from graph.lazy import lazy_exports

if TYPE_CHECKING:
    from graph.builder import build_graph
    from graph.cel import CelError, Condition
    from graph.context import AirlockContext
    from graph.db import migrate, open_pool, resolve_database_url
    from graph.domain import (
        Choice,
        Domain,
        DomainPlugin,
        OutputRules,
        PiiAllowances,
        StaleDecisionError,
        StatedQuestion,
        WriteGuard,
        describe_validation_error,
    )
    from graph.errors import AirlockError
    from graph.identity import resolve_identity
    from graph.outbox import OutboxStore, OutboxWorker
    from graph.plugins import DomainConfigError, load_plugin
    from graph.policy import Policy, PolicyError, load_policy
    from graph.runtime import AirlockServices, AirlockSettings, build_pipeline, prepare_database
    from graph.service import (
        AirlockApp,
        InvalidEditError,
        NotAllowedError,
        PendingInterrupt,
        StaleAnswerError,
        StaleReviewError,
        TurnResult,
    )
    from graph.state import AirlockState

__all__ = [
    "AirlockApp",
    "AirlockContext",
    "AirlockError",
    "AirlockServices",
    "AirlockSettings",
    "AirlockState",
    "CelError",
    "Choice",
    "Condition",
    "Domain",
    "DomainConfigError",
    "DomainPlugin",
    "InvalidEditError",
    "NotAllowedError",
    "OutboxStore",
    "OutboxWorker",
    "OutputRules",
    "PendingInterrupt",
    "PiiAllowances",
    "Policy",
    "PolicyError",
    "StaleAnswerError",
    "StaleDecisionError",
    "StaleReviewError",
    "StatedQuestion",
    "TurnResult",
    "WriteGuard",
    "build_graph",
    "build_pipeline",
    "describe_validation_error",
    "load_plugin",
    "load_policy",
    "migrate",
    "open_pool",
    "prepare_database",
    "resolve_database_url",
    "resolve_identity",
]

# Loaded on first use (PEP 562), so importing the package stays cheap and free of cycles.
_EXPORTS = {
    "AirlockApp": "graph.service",
    "AirlockContext": "graph.context",
    "AirlockError": "graph.errors",
    "AirlockServices": "graph.runtime",
    "AirlockSettings": "graph.runtime",
    "AirlockState": "graph.state",
    "CelError": "graph.cel",
    "Choice": "graph.domain",
    "Condition": "graph.cel",
    "Domain": "graph.domain",
    "DomainConfigError": "graph.plugins",
    "DomainPlugin": "graph.domain",
    "InvalidEditError": "graph.service",
    "NotAllowedError": "graph.service",
    "OutboxStore": "graph.outbox",
    "OutboxWorker": "graph.outbox",
    "OutputRules": "graph.domain",
    "PendingInterrupt": "graph.service",
    "PiiAllowances": "graph.domain",
    "Policy": "graph.policy",
    "PolicyError": "graph.policy",
    "StaleAnswerError": "graph.service",
    "StaleDecisionError": "graph.domain",
    "StaleReviewError": "graph.service",
    "StatedQuestion": "graph.domain",
    "TurnResult": "graph.service",
    "WriteGuard": "graph.domain",
    "build_graph": "graph.builder",
    "build_pipeline": "graph.runtime",
    "describe_validation_error": "graph.domain",
    "load_plugin": "graph.plugins",
    "load_policy": "graph.policy",
    "migrate": "graph.db",
    "open_pool": "graph.db",
    "prepare_database": "graph.runtime",
    "resolve_database_url": "graph.db",
    "resolve_identity": "graph.identity",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)
