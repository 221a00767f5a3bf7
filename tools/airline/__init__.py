"""The τ²-bench airline domain: data, loader, backend, tool schemas, facts and policy.

Typical wiring::

    ensure_loaded(pool)
    backend = AirlineBackend(pool=pool)
    facts = compute_facts(backend, name, args, user_id=ctx.user_id, conversation=conv)
    # ... guardrails from POLICY_PATH decide on (args, facts) ...
    result = backend.call(name, args, idempotency_key=key)
"""

from pathlib import Path

from tools.airline.backend import DEFAULT_NOW, AirlineBackend
from tools.airline.errors import ToolError
from tools.airline.facts import compute_facts
from tools.airline.loader import ensure_loaded
from tools.airline.schemas import AIRLINE_TOOLS, READ_TOOLS, WRITE_TOOLS, ToolSpec, langchain_tools

__all__ = [
    "AIRLINE_TOOLS",
    "DEFAULT_NOW",
    "POLICY_PATH",
    "READ_TOOLS",
    "WRITE_TOOLS",
    "AirlineBackend",
    "ToolError",
    "ToolSpec",
    "compute_facts",
    "ensure_loaded",
    "langchain_tools",
]

POLICY_PATH = Path(__file__).resolve().parent / "policy.yaml"
