"""Persistence: pick a Postgres server, open the pool, apply versioned migrations.

`DATABASE_URL` selects a server. Without it an embedded Postgres (`pgserver`) is
started with its data under `.data/pg`, so a fresh machine needs nothing installed.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from graph.errors import AirlockError

__all__ = [
    "DatabaseConfigError",
    "DatabaseUnavailableError",
    "Migration",
    "applied_migrations",
    "available_migrations",
    "connect_kwargs",
    "migrate",
    "open_pool",
    "resolve_database_url",
    "start_embedded_postgres",
]

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# An arbitrary constant so concurrent start-ups apply migrations one at a time.
_MIGRATION_LOCK_ID = 0x41_49_52_4C  # "AIRL"


class DatabaseConfigError(AirlockError, ValueError):
    """Raised when DATABASE_URL is malformed."""


class DatabaseUnavailableError(AirlockError, RuntimeError):
    """Raised when the Postgres server cannot be reached."""


def connect_kwargs() -> dict[str, Any]:
    """Return the connection settings every pool and checkpointer uses.

    ``client_connection_check_interval`` (Postgres 14+) makes the server notice a client that
    died while its statement waited on a lock and cancel it, instead of running the dead
    process's checkpoint or claim update after the lock frees.
    """
    return {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row,
            "options": "-c client_connection_check_interval=1000"}


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def _validate_url(url: str) -> str:
    url = url.strip()
    if not url:
        raise DatabaseConfigError("DATABASE_URL is empty; unset it to use the embedded Postgres")
    if not re.match(r"^postgres(ql)?://", url):
        try:  # libpq also accepts "host=... dbname=..." strings.
            psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise DatabaseConfigError(
                f"DATABASE_URL {_redact(url)!r} is not a Postgres URL "
                f"(expected postgresql://user:password@host:port/dbname): {exc}"
            ) from None
        return url
    try:
        psycopg.conninfo.conninfo_to_dict(url)
        urlsplit(url).port  # noqa: B018  (raises on a non-numeric port)
    except (psycopg.ProgrammingError, ValueError) as exc:
        raise DatabaseConfigError(f"DATABASE_URL {_redact(url)!r} is malformed: {exc}") from None
    return url


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded Postgres under ``data_dir`` and return its URL."""
    try:
        import pgserver
    except ImportError as exc:  # pragma: no cover - pgserver is a hard dependency
        raise DatabaseUnavailableError(
            "no DATABASE_URL set and the embedded Postgres is missing: pip install pgserver"
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None keeps the server running for other processes (the demo, a CLI,
    # a resumed thread); it is stopped by `airlock db stop`.
    server = pgserver.get_server(str(data_dir), cleanup_mode=None)
    uri: str = server.get_uri()
    log.info("embedded Postgres running with data in %s", data_dir)
    return uri


def resolve_database_url(
    url: str | None = None, *, environ: dict[str, str] | None = None, data_dir: Path | None = None
) -> str:
    """Return the database URL: explicit value, then DATABASE_URL, then embedded Postgres."""
    env = os.environ if environ is None else environ
    chosen = url if url is not None else env.get("DATABASE_URL")
    if chosen is not None:
        return _validate_url(chosen)
    base = data_dir or Path(env.get("AIRLOCK_DATA_DIR", ".data"))
    return start_embedded_postgres(base / "pg")


def open_pool(url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0) -> ConnectionPool:
    """Open a psycopg pool and check the server answers; raise a clear error if not."""
    pool: ConnectionPool = ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs=connect_kwargs(),
        open=False,
        name="airlock",
    )
    try:
        pool.open(wait=True, timeout=timeout)
    except Exception as exc:
        pool.close()
        raise DatabaseUnavailableError(
            f"cannot reach Postgres at {_redact(url)} within {timeout:.0f}s ({type(exc).__name__}). "
            "Check DATABASE_URL, or unset it to use the embedded Postgres."
        ) from exc
    return pool


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    """One versioned SQL migration file."""

    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    """Return the migrations shipped in ``graph/migrations``, ordered by version."""
    found: list[Migration] = []
    folder = resources.files("graph") / "migrations"
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(
                Migration(version=int(match[1]), name=match[2], sql=entry.read_text("utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in graph/migrations: {versions}")
    return found


def applied_migrations(pool: ConnectionPool) -> list[int]:
    """Return the versions already applied to the database."""
    with pool.connection() as conn:
        exists = conn.execute("SELECT to_regclass('public.schema_migrations') AS t").fetchone()
        if not exists or exists["t"] is None:  # type: ignore[index,call-overload]
            return []
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    return [int(r["version"]) for r in rows]  # type: ignore[call-overload,index]


def migrate(pool: ConnectionPool) -> list[int]:
    """Apply pending migrations in one transaction each; return the versions applied.

    Safe to call from several processes at once: an advisory lock serialises them.
    """
    applied_now: list[int] = []
    with pool.connection() as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_ID,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {
                int(r["version"])  # type: ignore[call-overload,index]
                for r in conn.execute("SELECT version FROM schema_migrations").fetchall()
            }
            for migration in available_migrations():
                if migration.version in done:
                    continue
                try:
                    conn.execute(migration.sql, prepare=False)  # type: ignore[arg-type]
                except psycopg.Error as exc:
                    raise RuntimeError(
                        f"migration {migration.version:03d}_{migration.name}.sql failed: {exc}"
                    ) from exc
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
                applied_now.append(migration.version)
    if applied_now:
        log.info("applied migrations %s", applied_now)
    return applied_now
