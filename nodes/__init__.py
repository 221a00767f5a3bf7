"""Graph nodes: guard pipeline, agent, tool guardrails, escalation, output and observability."""

__all__: list[str] = []
