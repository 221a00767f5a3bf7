"""Deterministic tool guardrails: pre-tool, idempotency, confirm, resilience."""

__all__: list[str] = []
