"""Load the bundled τ²-bench airline database into Postgres on first start."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

__all__ = ["DATA_DIR", "DB_PATH", "DEMO_PATH", "LOADER_LOCK_ID", "apply_demo", "ensure_loaded", "read_db"]

DATA_DIR = Path(__file__).resolve().parent / "data"
DB_PATH = DATA_DIR / "db.json.gz"
# Records the demo accounts need for the README's examples (a flight the airline cancelled, for
# the compensation example); not τ² data, see data/README.md.
DEMO_PATH = DATA_DIR / "demo.json"
# Fixed advisory-lock id ("airline" in ASCII) so concurrent starters serialise on the same lock.
LOADER_LOCK_ID = 0x61_69_72_6C_69_6E_65


def read_db(path: Path = DB_PATH, *, demo: Path | None = DEMO_PATH) -> dict[str, dict[str, Any]]:
    """Return the ``{flights, users, reservations}`` maps from the gzipped ``db.json``.

    Args:
        path: The gzipped τ² ``db.json``.
        demo: The demo additions to apply on top (None: the τ² data alone).
    """
    with gzip.open(path, "rb") as fh:
        data: dict[str, dict[str, Any]] = json.loads(fh.read())
    return apply_demo(data, demo) if demo is not None else data


def apply_demo(data: dict[str, dict[str, Any]], demo: Path = DEMO_PATH) -> dict[str, dict[str, Any]]:
    """Add the demo reservations of ``demo`` to ``data`` (and to their owners' lists); return it.

    Raises:
        ValueError: A demo reservation's id is taken, or it names an unknown user or flight.
    """
    extra = json.loads(demo.read_text(encoding="utf-8"))
    for rid, doc in (extra.get("reservations") or {}).items():
        if rid in data["reservations"]:
            raise ValueError(f"{demo}: reservation {rid} already exists in the τ² data")
        owner = data["users"].get(doc["user_id"])
        if owner is None or any(f["flight_number"] not in data["flights"] for f in doc["flights"]):
            raise ValueError(f"{demo}: reservation {rid} names an unknown user or flight")
        data["reservations"][rid] = doc
        owner["reservations"] = [*owner["reservations"], rid]
    return data


def ensure_loaded(pool: ConnectionPool, *, path: Path = DB_PATH) -> bool:
    """Load the airline tables from ``path`` unless they already hold data.

    Runs in one transaction under ``pg_advisory_xact_lock``, so when several processes start at
    once exactly one loads and the others wait, then see the rows and skip.

    Args:
        pool: The application's connection pool.
        path: The gzipped τ² ``db.json``.

    Returns:
        True if this call loaded the data, False if it was already there.
    """
    with pool.connection() as conn, conn.transaction():
        cur = conn.cursor()
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOADER_LOCK_ID,))
        cur.execute("SELECT EXISTS (SELECT 1 FROM airline_flights) AS loaded")
        row = cur.fetchone()
        if row is not None and _first(row):
            _add_missing_demo(cur)
            return False
        data = read_db(path)
        # COPY in text format: Postgres parses each JSON string into jsonb itself.
        with cur.copy("COPY airline_flights (flight_number, doc) FROM STDIN") as copy:
            for number, doc in data["flights"].items():
                copy.write_row((number, json.dumps(doc)))
        with cur.copy("COPY airline_users (user_id, doc) FROM STDIN") as copy:
            for user_id, doc in data["users"].items():
                copy.write_row((user_id, json.dumps(doc)))
        with cur.copy(
            "COPY airline_reservations (reservation_id, user_id, doc) FROM STDIN"
        ) as copy:
            for reservation_id, doc in data["reservations"].items():
                copy.write_row((reservation_id, doc["user_id"], json.dumps(doc)))
        return True


def _add_missing_demo(cur: Any) -> None:
    """Add the demo reservations to a database loaded before they existed (each once)."""
    extra = json.loads(DEMO_PATH.read_text(encoding="utf-8"))
    for rid, doc in (extra.get("reservations") or {}).items():
        cur.execute("SELECT 1 FROM airline_reservations WHERE reservation_id = %s", (rid,))
        if cur.fetchone() is not None:
            continue
        cur.execute(
            "INSERT INTO airline_reservations (reservation_id, user_id, doc) VALUES (%s, %s, %s::jsonb)",
            (rid, doc["user_id"], json.dumps(doc)),
        )
        cur.execute(
            "UPDATE airline_users SET doc = jsonb_set(doc, '{reservations}', doc->'reservations' || %s::jsonb)"
            " WHERE user_id = %s",
            (json.dumps([rid]), doc["user_id"]),
        )


def _first(row: Any) -> Any:
    """Return the first column of a row from either a dict or a tuple row factory."""
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]
