"""Shared pieces of the retail tests: a database with the store loaded, and the services over it."""

from __future__ import annotations

import atexit
import inspect
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from graph.db import open_pool
from graph.runtime import AirlockServices
from tests.conftest import drop_database, make_database
from tests.helpers import make_services
from tools.retail import POLICY_PATH, domain_factory, ensure_loaded, plugin

# raj_sanchez_2970: a delivered order paid by card, a pending one, and a large delivered one.
USER = "raj_sanchez_2970"
CARD = "credit_card_3362387"  # Mastercard ending 2130
GIFT = "gift_card_2259499"  # balance USD 30.00
PENDING = "#W4566809"  # USD 826.70 by card: camera 1569829406 (320.55), purifier 5826601160 (506.15)
DELIVERED = "#W7736708"  # USD 980.87 by card: notebook 6574183535 (28.14) among 4 items
LARGE = "#W1067251"  # USD 1201.55 delivered: earbuds 6452271382, grill 7848293342
NOTEBOOK, NOTEBOOK_A4 = "6574183535", "1199058591"  # A6 hard cover 28.14 -> A4 hard cover 32.29
OTHER_ORDER = "#W2611340"  # james_li_5688's processed order
OTHER_CARD = "credit_card_7815826"  # noah_brown_6181's card

_LOCK = threading.Lock()
_template: dict[str, str] = {}


def _with_db(url: str, dbname: str) -> str:
    params: dict[str, Any] = dict(conninfo_to_dict(url))
    params["dbname"] = dbname
    return make_conninfo(**params)


def _template_name(server: str) -> str:
    """Create once per session a template: the engine's template plus the retail tables and data."""
    with _LOCK:
        if server not in _template:
            name, url = make_database(server)
            pool = open_pool(url, max_size=2)
            try:
                ensure_loaded(pool)
            finally:
                pool.close()
            _template[server] = name
        return _template[server]


def retail_database(server: str) -> tuple[str, str]:
    """Return (name, url) of a fresh database holding the engine's tables and the store."""
    template = _template_name(server)
    name = f"airlock_r_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_with_db(server, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    return name, _with_db(server, name)


@contextmanager
def retail_db(server: str) -> Iterator[str]:
    """Yield the URL of a fresh database with the store loaded; drop it afterwards."""
    name, url = retail_database(server)
    try:
        yield url
    finally:
        drop_database(server, name)


@contextmanager
def retail_app_services(url: str) -> Iterator[AirlockServices]:
    """Yield the engine's services over ``url`` with the retail domain and policy."""
    # With the engine's domain port the whole plugin is served (prompt, PII, planner); before
    # it, the domain factory and the policy are what the engine takes.
    if "plugin" in inspect.signature(AirlockServices.start).parameters:
        services = make_services(url, policy=POLICY_PATH, plugin=plugin())
    else:
        services = make_services(url, policy=POLICY_PATH, domain_factory=domain_factory)
    try:
        yield services
    finally:
        services.close()


@atexit.register
def _drop_templates() -> None:
    for server, name in list(_template.items()):
        try:
            drop_database(server, name)
        except psycopg.Error:  # the server is gone already: nothing to clean
            pass


def query(pool: Any, statement: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Run one read and return its rows as dicts."""
    with pool.connection() as conn:
        return [dict(r) for r in conn.execute(statement, params).fetchall()]
