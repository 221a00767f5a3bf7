"""τ² retail tasks replayed through our backend and policy, against τ²'s own tools as the oracle.

For a sample of ``tasks.json`` (every third task of the ``train`` split whose expected actions
write, plus the tasks τ²'s items-change bug touches; ``AIRLOCK_RETAIL_REPLAY=all``: every task),
the expected actions run twice from the same initial data: through the reference implementation
(``upstream_tools.py``, MIT, run on stand-ins for the three ``tau2`` modules it imports) and
through :class:`RetailBackend` on Postgres. Before each of our calls the policy's pre-tool
checks run on the facts our code computes, as the task's customer: a compliant action must not
be denied. The final states are compared as τ² does, by a hash of the whole database (amounts
to the cent, absent optional fields as τ² writes them: ``null``). Violating variants of every
write (as another customer, with another customer's payment method, repeated once done) must
each be stopped.

The reference is corrected in one place, where τ² has a bug our backend does not copy:
``modify_pending_order_items`` gives every changed item the last new item's price and options.
"""

from __future__ import annotations

import enum
import hashlib
import importlib.util
import json
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from graph.cel import Condition
from graph.db import open_pool
from graph.policy import PreToolGuardrail, load_policy
from graph.state import INPUT_RISK_KEY, input_risk_fact
from tests.retail_support import query, retail_db
from tools.retail import POLICY_PATH, RETAIL_TOOLS, RetailBackend, ToolError, compute_facts, default_facts
from tools.retail.loader import read_db

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[1]
TAU2 = ROOT.parent / "shared" / "data" / "retail"
# τ²'s items-change bug changes the expected state of these tasks (several items, new prices differ).
BUGGY_ITEMS_TASKS = {"20", "21", "36", "37", "100"}
# Someone no task acts for, and a card of theirs: the violating variants use them.
OTHER_CUSTOMER, OTHER_METHOD = "noah_brown_6181", "credit_card_7815826"
EXPECTED_ESCALATIONS = {"large-refund", "large-charge", "repeated-returns", "human-handoff"}
ONCE_PER_ORDER = {"cancel_pending_order", "modify_pending_order_items", "return_delivered_order_items",
                  "exchange_delivered_order_items"}


def _stub_tau2() -> None:
    """Register minimal stand-ins for the tau2 modules the reference imports."""
    if "tau2.domains.retail.data_model" in sys.modules:
        return

    class DB(BaseModel):
        @classmethod
        def load(cls, path: str) -> Any:
            return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))

    class ToolType(enum.Enum):
        READ = "read"
        WRITE = "write"
        GENERIC = "generic"
        THINK = "think"

    def is_tool(kind: Any) -> Callable[[Any], Any]:
        return lambda fn: fn

    class ToolKitBase:
        def __init__(self, db: Any) -> None:
            self.db = db

    modules: dict[str, dict[str, Any]] = {
        "tau2": {}, "tau2.domains": {}, "tau2.domains.retail": {},
        "tau2.domains.retail.utils": {"RETAIL_DB_PATH": str(TAU2 / "db.json")},
        "tau2.environment": {}, "tau2.environment.db": {"DB": DB},
        "tau2.environment.toolkit": {"ToolKitBase": ToolKitBase, "ToolType": ToolType, "is_tool": is_tool},
    }
    for name, attrs in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
    for name, file in (("tau2.domains.retail.data_model", "upstream_data_model.py"),
                       ("tau2.domains.retail.tools", "upstream_tools.py")):
        spec = importlib.util.spec_from_file_location(name, TAU2 / file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


def _reference() -> tuple[Any, Any]:
    _stub_tau2()
    data_model = sys.modules["tau2.domains.retail.data_model"]
    tools = sys.modules["tau2.domains.retail.tools"]
    return data_model.RetailDB, tools.RetailTools


def _corrected(tools: Any) -> None:
    """Give each changed item its own new variant's price and options (τ²'s bug, corrected)."""
    original = tools.modify_pending_order_items

    def modify(order_id: str, item_ids: list[str], new_item_ids: list[str], payment_method_id: str) -> Any:
        order = tools.db.orders[order_id]
        lines = list(order.items)
        positions: list[int] = []
        for old in item_ids:
            positions.append(next(n for n, line in enumerate(lines) if n not in positions and line.item_id == old))
        result = original(order_id, item_ids, new_item_ids, payment_method_id)
        for position, new in zip(positions, new_item_ids, strict=True):
            variant = tools._get_item(new)
            lines[position].price, lines[position].options = variant.price, dict(variant.options)
        return result

    tools.modify_pending_order_items = modify


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, float):
        return round(value, 2)
    return value


def state_hash(state: dict[str, Any]) -> str:
    """Hash the whole database as τ² does (sorted JSON), amounts to the cent."""
    return hashlib.sha256(json.dumps(_normal(state), sort_keys=True).encode()).hexdigest()


_ORDER_FIELDS = ("cancel_reason", "exchange_items", "exchange_new_items", "exchange_payment_method_id",
                 "exchange_price_difference", "return_items", "return_payment_method_id")


def our_state(pool: Any, backend: RetailBackend) -> dict[str, Any]:
    """Read the whole store back in τ²'s shape (optional order fields ``null`` when unset)."""
    products: dict[str, Any] = {}
    for row in query(pool, "SELECT product_id FROM retail_products ORDER BY position"):
        products[row["product_id"]] = backend.get_product_details(product_id=row["product_id"])
    users = {r["user_id"]: backend.fetch_user(r["user_id"]) for r in query(pool, "SELECT user_id FROM retail_users")}
    orders = {}
    for row in query(pool, "SELECT order_id, doc FROM retail_orders"):
        orders[row["order_id"]] = {**dict.fromkeys(_ORDER_FIELDS), **row["doc"]}
    return {"products": products, "users": users, "orders": orders}


def _tasks() -> list[dict[str, Any]]:
    tasks = json.loads((TAU2 / "tasks.json").read_text(encoding="utf-8"))
    split = json.loads((TAU2 / "split_tasks.json").read_text(encoding="utf-8"))
    train = set(split["train"])
    if os.environ.get("AIRLOCK_RETAIL_REPLAY") == "all":  # every task (about 6 minutes)
        return [t for t in tasks if t["evaluation_criteria"]["actions"]]
    writes = {n for n, s in RETAIL_TOOLS.items() if s.write}
    chosen = []
    for task in tasks:
        names = {a["name"] for a in task["evaluation_criteria"]["actions"] or []}
        if task["id"] in BUGGY_ITEMS_TASKS or (task["id"] in train and names & writes and int(task["id"]) % 3 == 0):
            chosen.append(task)
    return chosen


def _customer(task: dict[str, Any], reference: Any) -> str:
    for action in task["evaluation_criteria"]["actions"]:
        if action["name"].startswith("find_user_id"):
            try:
                return str(getattr(reference, action["name"])(**action["arguments"]))
            except ValueError:  # the customer's first try (a wrong e-mail) finds nobody
                continue
    for action in task["evaluation_criteria"]["actions"]:
        order_id = action["arguments"].get("order_id")
        if order_id:
            return str(reference.db.orders[order_id].user_id)
    # No action names the account (a hand-off only): any signed-in customer will do.
    return str(next(iter(reference.db.users)))


@pytest.fixture
def retail_pool(server_url):
    with retail_db(server_url) as url:
        pool = open_pool(url, max_size=4)
        yield pool
        pool.close()


@pytest.fixture(scope="module")
def checks() -> dict[str, list[Any]]:
    policy = load_policy(POLICY_PATH, known_tools=RETAIL_TOOLS, facts=default_facts())
    out: dict[str, list[Any]] = {}
    for name in RETAIL_TOOLS:
        pre = policy.guardrail(name, PreToolGuardrail)
        out[name] = [(c.id, c.action, Condition.compile(c.when)) for c in (pre.checks if pre else [])]
        out[f"escalations:{name}"] = [(e.id, Condition.compile(e.when))
                                      for phase in ("before", "after") for e in policy.escalations_for(name, phase)]
    return out


TASKS = _tasks() if TAU2.is_dir() else []


@pytest.mark.skipif(not TAU2.is_dir(), reason="τ² retail reference data (../shared/data/retail) not present")
@pytest.mark.parametrize("task", TASKS, ids=[t["id"] for t in TASKS])
def test_expected_actions_reach_the_reference_state_without_a_denial(task, retail_pool, checks):
    db_class, tools_class = _reference()
    reference = tools_class(db_class.load(str(TAU2 / "db.json")))
    if task["id"] in BUGGY_ITEMS_TASKS:
        _corrected(reference)
    customer = _customer(task, tools_class(db_class.load(str(TAU2 / "db.json"))))
    backend = RetailBackend(pool=retail_pool)
    denials: list[str] = []
    unstopped: list[str] = []
    escalations: list[str] = []

    def verdict_for(name: str, args: dict[str, Any], user: str) -> str | None:
        facts = compute_facts(backend, name, args, user_id=user, conversation={})
        return next((f"{rule} ({kind})" for rule, kind, cond in checks[name]
                     if cond.test({"args": args, "facts": facts})), None)

    for n, action in enumerate(task["evaluation_criteria"]["actions"]):
        name, args = action["name"], action["arguments"]
        if RETAIL_TOOLS[name].write:
            # Violating variants, each stopped before it runs: the same call by another customer,
            # and paying or refunding with another customer's payment method.
            if verdict_for(name, args, OTHER_CUSTOMER) is None:
                unstopped.append(f"{name}#{n} as another customer")
            if "payment_method_id" in args and verdict_for(
                    name, {**args, "payment_method_id": OTHER_METHOD}, customer) is None:
                unstopped.append(f"{name}#{n} with another customer's payment method")
        verdict = verdict_for(name, args, customer)
        # Escalations this call raises (a reviewer decides; not a denial), listed with their rule.
        facts = {**compute_facts(backend, name, args, user_id=customer, conversation={}),
                 INPUT_RISK_KEY: input_risk_fact(None)}
        escalations += [f"{name}#{n}: {rule}" for rule, cond in checks[f"escalations:{name}"]
                        if cond.test({"args": args, "facts": facts, "result": {}, "state": {"phase": "before"}})]
        try:
            expected: Any = getattr(reference, name)(**args)
        except ValueError as exc:
            expected = exc
        # A false denial: the policy stops an action the reference carries out.
        if verdict is not None and not isinstance(expected, Exception):
            denials.append(f"{name}#{n}: {verdict}")
        try:
            ours: Any = backend.call(name, args, idempotency_key=f"task{task['id']}:{n}")
        except ToolError as exc:
            ours = exc
        # The same calls succeed and fail on both sides.
        assert isinstance(ours, ToolError) == isinstance(expected, Exception), (name, args, ours, expected)
    assert denials == [], f"task {task['id']}: compliant actions denied"
    # Only the store's money and hand-off rules ever hold a τ² task for review.
    assert {e.split(": ")[1] for e in escalations} <= EXPECTED_ESCALATIONS, escalations
    actions = task["evaluation_criteria"]["actions"]
    handoffs = [n for n, a in enumerate(actions) if a["name"] == "transfer_to_human_agents"]
    assert [e for e in escalations if e.endswith(": human-handoff")] == [
        f"transfer_to_human_agents#{n}: human-handoff" for n in handoffs]
    assert unstopped == [], f"task {task['id']}: violating variants not stopped"
    # Done once, these cannot be done again: the order's status has moved on.
    for n, action in enumerate(task["evaluation_criteria"]["actions"]):
        if action["name"] in ONCE_PER_ORDER and verdict_for(action["name"], action["arguments"], customer) is None:
            unstopped.append(f"{action['name']}#{n} repeated")
    assert unstopped == [], f"task {task['id']}: repeated writes not stopped"
    assert state_hash(our_state(retail_pool, backend)) == state_hash(reference.db.model_dump()), \
        f"task {task['id']}: final state differs from the reference"


def test_the_bundled_data_is_the_reference_data():
    """db.json.gz decompresses to τ²'s db.json (the loader serves exactly the benchmark's store)."""
    if not TAU2.is_dir():
        pytest.skip(f"the τ² retail reference data is not at {TAU2}")
    assert read_db() == json.loads((TAU2 / "db.json").read_text(encoding="utf-8"))
