"""Load the bundled τ²-bench airline database into Postgres on first start."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

__all__ = ["DATA_DIR", "DB_PATH", "LOADER_LOCK_ID", "ensure_loaded", "read_db"]

DATA_DIR = Path(__file__).resolve().parent / "data"
DB_PATH = DATA_DIR / "db.json.gz"
# Fixed advisory-lock id ("airline" in ASCII) so concurrent starters serialise on the same lock.
LOADER_LOCK_ID = 0x61_69_72_6C_69_6E_65


def read_db(path: Path = DB_PATH) -> dict[str, dict[str, Any]]:
    """Return the ``{flights, users, reservations}`` maps from the gzipped ``db.json``."""
    with gzip.open(path, "rb") as fh:
        data: dict[str, dict[str, Any]] = json.loads(fh.read())
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


def _first(row: Any) -> Any:
    """Return the first column of a row from either a dict or a tuple row factory."""
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]
