"""Create the retail tables and load the bundled τ²-bench retail database on first start."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from graph.db import applied_domain_migrations
from graph.db import migrate as engine_migrate

__all__ = [
    "DATA_DIR",
    "DB_PATH",
    "LOADER_LOCK_ID",
    "MIGRATIONS_DIR",
    "ensure_loaded",
    "migrate",
    "read_db",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
DB_PATH = DATA_DIR / "db.json.gz"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Fixed advisory-lock id ("retail" in ASCII): concurrent starters serialise on it.
LOADER_LOCK_ID = 0x72_65_74_61_69_6C


def read_db(path: Path = DB_PATH) -> dict[str, dict[str, Any]]:
    """Return the ``{products, users, orders}`` maps of the gzipped τ² ``db.json``."""
    with gzip.open(path, "rb") as fh:
        data: dict[str, dict[str, Any]] = json.loads(fh.read())
    return data


def migrate(pool: ConnectionPool) -> list[int]:
    """Apply the engine's pending migrations, then the store's, with the engine's runner.

    The store's versions are recorded per domain in ``domain_migrations``
    (:func:`graph.db.migrate` with this domain's plugin), so they never collide with the
    engine's ``schema_migrations`` numbers, and a version already applied is skipped.

    Returns:
        The store's versions applied by this call.
    """
    from tools.retail import plugin

    domain = plugin()
    before = set(applied_domain_migrations(pool, domain.name))
    engine_migrate(pool, domains=(domain,))
    return [v for v in applied_domain_migrations(pool, domain.name) if v not in before]


def ensure_loaded(pool: ConnectionPool, *, path: Path = DB_PATH) -> bool:
    """Apply pending migrations (the engine's and the store's); load the store unless it holds data.

    Runs under ``pg_advisory_xact_lock``: when several processes start at once exactly one
    loads, the others wait, then see the rows and skip.

    Returns:
        True if this call loaded the data, False if it was already there.
    """
    migrate(pool)
    with pool.connection() as conn, conn.transaction():
        cur = conn.cursor()
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOADER_LOCK_ID,))
        cur.execute("SELECT EXISTS (SELECT 1 FROM retail_products) AS loaded")
        row = cur.fetchone()
        if row is not None and _first(row):
            return False
        data = read_db(path)
        with cur.copy("COPY retail_products (product_id, name, position) FROM STDIN") as copy:
            for n, (product_id, product) in enumerate(data["products"].items()):
                copy.write_row((product_id, product["name"], n))
        with cur.copy(
            "COPY retail_items (item_id, product_id, options, available, price, position) FROM STDIN"
        ) as copy:
            for product_id, product in data["products"].items():
                for n, (item_id, variant) in enumerate(product["variants"].items()):
                    copy.write_row((item_id, product_id, json.dumps(variant["options"]),
                                    bool(variant["available"]), _cents(variant["price"]), n))
        with cur.copy("COPY retail_users (user_id, email, doc) FROM STDIN") as copy:
            for user_id, user in data["users"].items():
                doc = {k: v for k, v in user.items() if k != "payment_methods"}
                copy.write_row((user_id, user["email"], json.dumps(doc)))
        with cur.copy(
            "COPY retail_payment_methods (payment_method_id, user_id, source, balance, details, position)"
            " FROM STDIN"
        ) as copy:
            for user_id, user in data["users"].items():
                for n, (method_id, method) in enumerate(user["payment_methods"].items()):
                    details = {k: v for k, v in method.items() if k not in {"source", "id", "balance"}}
                    balance = _cents(method["balance"]) if method["source"] == "gift_card" else None
                    copy.write_row((method_id, user_id, method["source"], balance, json.dumps(details), n))
        with cur.copy("COPY retail_orders (order_id, doc) FROM STDIN") as copy:
            for order_id, order in data["orders"].items():
                copy.write_row((order_id, json.dumps(order)))
        return True


def _cents(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _first(row: Any) -> Any:
    """Return the first column of a row from either a dict or a tuple row factory."""
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]
