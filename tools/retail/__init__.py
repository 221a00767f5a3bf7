"""The τ²-bench retail domain: an online store's customer desk, as an airlock domain plugin.

Typical wiring (what the engine's domain port does with these pieces)::

    ensure_loaded(pool)                      # creates the retail_* tables, loads db.json.gz
    domain = RetailDomain.from_pool(pool=pool)
    policy = load_policy(POLICY_PATH, known_tools=domain.tools, facts=domain.neutral_facts())

Every piece the engine needs is a module-level name here: :data:`DOMAIN_NAME`,
:func:`domain_factory`, :data:`MIGRATIONS_DIR`, :func:`ensure_loaded`, :data:`POLICY_PATH`,
:data:`SYSTEM_PROMPT`, :data:`TRANSFER_MESSAGE`, :data:`PII_ALLOW_PATTERNS`,
:data:`DEMO_CUSTOMERS`, :data:`EXAMPLES` and :func:`make_planner` (the offline planner); and
:func:`plugin` bundles them for the engine's domain port (``AIRLOCK_DOMAIN=retail``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from tools.retail.backend import RetailBackend
from tools.retail.domain import RetailDomain
from tools.retail.errors import ToolError
from tools.retail.examples import DEMO_CUSTOMERS, EXAMPLES, Example, app_prompts, readme_markdown
from tools.retail.facts import compute_facts, default_facts
from tools.retail.loader import MIGRATIONS_DIR, ensure_loaded, migrate
from tools.retail.pii import ID_PATTERNS, NON_NAMES
from tools.retail.prompt import HANDOFF_TOOL, SYSTEM_PROMPT, TRANSFER_MESSAGE, conversation_facts
from tools.retail.schemas import READ_TOOLS, RETAIL_TOOLS, WRITE_TOOLS, ToolSpec, langchain_tools
from tools.retail.third_party import third_party

__all__ = [
    "DATA_DIR",
    "DEMO_ACCOUNTS_PATH",
    "DEMO_CUSTOMERS",
    "HANDOFF_TOOL",
    "DOMAIN_NAME",
    "EXAMPLES",
    "MIGRATIONS_DIR",
    "PII_ALLOW_PATTERNS",
    "POLICY_PATH",
    "READ_TOOLS",
    "RETAIL_TOOLS",
    "SYSTEM_PROMPT",
    "TRANSFER_MESSAGE",
    "WRITE_TOOLS",
    "Example",
    "RetailBackend",
    "RetailDomain",
    "ToolError",
    "ToolSpec",
    "app_prompts",
    "compute_facts",
    "conversation_facts",
    "default_facts",
    "domain_factory",
    "ensure_loaded",
    "langchain_tools",
    "make_planner",
    "migrate",
    "plugin",
    "readme_markdown",
]

DOMAIN_NAME = "retail"
DATA_DIR = Path(__file__).resolve().parent / "data"
POLICY_PATH = Path(__file__).resolve().parent / "policy.yaml"
#: The accounts file of the store's loopback demo (its demo customers, see ``examples.py``).
DEMO_ACCOUNTS_PATH = Path(__file__).resolve().parent / "accounts.demo.yaml"
#: Identifiers of this domain that are never PII (named group ``v``: the kept span).
PII_ALLOW_PATTERNS = ID_PATTERNS


def domain_factory(*, pool: ConnectionPool) -> RetailDomain:
    """Build the retail domain over the application's pool (``AirlockServices.start(domain_factory=...)``)."""
    return RetailDomain.from_pool(pool=pool)


def make_planner(**kwargs: Any) -> Any:
    """Return the offline planner of the store demo (a chat model; see ``tools.retail.planner``)."""
    from tools.retail.planner import RetailPlanner

    return RetailPlanner(**kwargs)


def plugin() -> Any:
    """Return the store as the engine's domain port sees it (``graph.domain.DomainPlugin``).

    Cheap: no database, no model. The port's classes are looked up when called, so this
    package also imports on an engine without the port.
    """
    port = vars(importlib.import_module("graph.domain"))
    return port["DomainPlugin"](
        name=DOMAIN_NAME,
        build=lambda pool: RetailDomain.from_pool(pool=pool),
        tools=RETAIL_TOOLS,
        neutral_facts=default_facts,
        policy_path=POLICY_PATH,
        system_prompt=SYSTEM_PROMPT,
        conversation_facts=conversation_facts,
        migrations=MIGRATIONS_DIR,
        seed=ensure_loaded,
        output=port["OutputRules"](handoff_tool=HANDOFF_TOOL, handoff_text=TRANSFER_MESSAGE),
        pii=port["PiiAllowances"](id_patterns=ID_PATTERNS, non_names=NON_NAMES),
        third_party=third_party(),
        offline_planner=make_planner,
        demo_prompts=app_prompts,
        demo_accounts=DEMO_ACCOUNTS_PATH,
    )
