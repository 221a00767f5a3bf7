"""The τ²-bench airline domain: data, loader, backend, tool schemas, facts and policy.

The engine reaches it only through :func:`plugin` (``AIRLOCK_DOMAIN=airline``, the default).

Typical wiring::

    ensure_loaded(pool)
    backend = AirlineBackend(pool=pool)
    facts = compute_facts(backend, name, args, user_id=ctx.user_id, conversation=conv)
    # ... guardrails from POLICY_PATH decide on (args, facts) ...
    result = backend.call(name, args, idempotency_key=key)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from graph.domain import DomainPlugin, OutputRules
from tools.airline.backend import DEFAULT_NOW, AirlineBackend
from tools.airline.errors import ToolError
from tools.airline.facts import compute_facts
from tools.airline.loader import ensure_loaded
from tools.airline.pii import PII_ALLOWANCES
from tools.airline.prompt import HANDOFF_TOOL, SYSTEM_PROMPT, TRANSFER_MESSAGE, conversation_facts
from tools.airline.schemas import AIRLINE_TOOLS, READ_TOOLS, WRITE_TOOLS, ToolSpec, langchain_tools
from tools.airline.third_party import THIRD_PARTY

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
    "plugin",
]

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from psycopg_pool import ConnectionPool

    from tools.airline.domain import AirlineDomain

_HERE = Path(__file__).resolve().parent
POLICY_PATH = _HERE / "policy.yaml"


def _build(pool: ConnectionPool) -> AirlineDomain:
    from tools.airline.domain import AirlineDomain

    return AirlineDomain.from_pool(pool=pool)


def _planner() -> BaseChatModel:
    from tools.airline.planner import AirlinePlanner

    return AirlinePlanner()


def _neutral_facts() -> dict[str, object]:
    from tools.airline.facts import default_facts

    return default_facts()


def _prompts(customer: str | None) -> tuple[str, ...]:
    from tools.airline.examples import app_prompts

    return app_prompts(customer)


def plugin() -> DomainPlugin:
    """Return the airline domain as the engine sees it (see ``graph.domain.DomainPlugin``)."""
    return DomainPlugin(
        name="airline",
        build=_build,
        tools=AIRLINE_TOOLS,
        neutral_facts=_neutral_facts,
        policy_path=POLICY_PATH,
        system_prompt=SYSTEM_PROMPT,
        conversation_facts=conversation_facts,
        migrations=_HERE / "migrations",
        # Before the airline had its own folder, its schema was engine migrations 002 and 005.
        adopted_migrations={2: 2, 5: 5},
        seed=ensure_loaded,
        output=OutputRules(handoff_tool=HANDOFF_TOOL, handoff_text=TRANSFER_MESSAGE),
        pii=PII_ALLOWANCES,
        third_party=THIRD_PARTY,
        offline_planner=_planner,
        demo_prompts=_prompts,
        demo_accounts=_HERE / "accounts.demo.yaml",
    )
