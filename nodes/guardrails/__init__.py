"""Deterministic tool guardrails: pre-tool, idempotency, confirm, resilience."""

from __future__ import annotations

from typing import TYPE_CHECKING

from graph.lazy import lazy_exports

if TYPE_CHECKING:
    from nodes.guardrails.canonical import InvalidArgumentsError, canonical_arguments
    from nodes.guardrails.chain import ToolCallRequest, ToolOutcome, compose
    from nodes.guardrails.confirm import call_hash
    from nodes.guardrails.idempotency import IdempotencyStore
    from nodes.guardrails.outcomes import OutcomeStore
    from nodes.guardrails.resilience import (
        BreakerOpenError,
        BreakerRegistry,
        CircuitBreaker,
        ResilientCaller,
        ServiceUnavailableError,
    )
    from nodes.guardrails.steps import Decider

__all__ = [
    "BreakerOpenError",
    "BreakerRegistry",
    "CircuitBreaker",
    "Decider",
    "IdempotencyStore",
    "InvalidArgumentsError",
    "OutcomeStore",
    "ResilientCaller",
    "ServiceUnavailableError",
    "ToolCallRequest",
    "ToolOutcome",
    "call_hash",
    "canonical_arguments",
    "compose",
]

# Loaded on first use (PEP 562), so importing the package stays cheap and free of cycles.
_EXPORTS = {
    "BreakerOpenError": "nodes.guardrails.resilience",
    "BreakerRegistry": "nodes.guardrails.resilience",
    "CircuitBreaker": "nodes.guardrails.resilience",
    "Decider": "nodes.guardrails.steps",
    "IdempotencyStore": "nodes.guardrails.idempotency",
    "InvalidArgumentsError": "nodes.guardrails.canonical",
    "OutcomeStore": "nodes.guardrails.outcomes",
    "ResilientCaller": "nodes.guardrails.resilience",
    "ServiceUnavailableError": "nodes.guardrails.resilience",
    "ToolCallRequest": "nodes.guardrails.chain",
    "ToolOutcome": "nodes.guardrails.chain",
    "call_hash": "nodes.guardrails.confirm",
    "canonical_arguments": "nodes.guardrails.canonical",
    "compose": "nodes.guardrails.chain",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)
