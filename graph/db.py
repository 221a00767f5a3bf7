"""Persistence: pick a Postgres server, open the pool, apply versioned migrations.

`DATABASE_URL` selects a server. Without it an embedded Postgres (`pgserver`) is
started with its data under `<data dir>/pg` (:func:`default_data_dir`), so a fresh machine
needs nothing installed.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from graph.errors import AirlockError

if TYPE_CHECKING:
    from graph.domain import DomainPlugin

__all__ = [
    "DATA_DIR_ENV",
    "DatabaseConfigError",
    "DatabaseUnavailableError",
    "Migration",
    "applied_domain_migrations",
    "applied_migrations",
    "available_migrations",
    "domain_migrations",
    "connect_kwargs",
    "default_data_dir",
    "migrate",
    "open_pool",
    "redact_conninfo",
    "resolve_database_url",
    "start_embedded_postgres",
]

log = logging.getLogger(__name__)

DATA_DIR_ENV = "AIRLOCK_DATA_DIR"
_CHECKOUT = Path(__file__).resolve().parents[1]


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Return the app's data directory (embedded Postgres, vault key), the same from any directory.

    ``AIRLOCK_DATA_DIR`` when set; else ``.data`` in the source checkout the code runs from
    (where ``make demo`` keeps it); else, for an installed package, ``$XDG_DATA_HOME/airlock``
    (``~/.local/share/airlock``). Never relative to the current directory: a command run from
    elsewhere must find the app's database, not start a second one.
    """
    env = os.environ if environ is None else environ
    if env.get(DATA_DIR_ENV):
        return Path(env[DATA_DIR_ENV]).expanduser().resolve()
    if (_CHECKOUT / "pyproject.toml").is_file():
        return _CHECKOUT / ".data"
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "airlock"

_MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# Engine versions that moved into a domain's own folder (002: the airline schema); never reused,
# since databases migrated before the move recorded them (see ``DomainPlugin.adopted_migrations``).
_RETIRED_VERSIONS = frozenset({2})
# An arbitrary constant so concurrent start-ups apply migrations one at a time.
_MIGRATION_LOCK_ID = 0x41_49_52_4C  # "AIRL"


class DatabaseConfigError(AirlockError, ValueError):
    """Raised when DATABASE_URL is malformed."""


class DatabaseUnavailableError(AirlockError, RuntimeError):
    """Raised when the Postgres server cannot be reached."""


def connect_kwargs(role: str | None = None) -> dict[str, Any]:
    """Return the connection settings every pool and checkpointer uses.

    ``client_connection_check_interval`` (Postgres 14+) makes the server notice a client that
    died while its statement waited on a lock and cancel it, instead of running the dead
    process's checkpoint or claim update after the lock frees. ``role`` makes the connection act
    as that role from its first statement (it is the session's default, so even ``RESET ROLE``
    comes back to it).
    """
    options = "-c client_connection_check_interval=1000"
    if role is not None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", role):
            raise DatabaseConfigError(f"invalid role name {role!r}")
        options += f" -c role={role}"
    return {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row, "options": options}


_URL_PASSWORD = re.compile(r"(//[^:/@?#]*):[^@/?#]*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s']\S*)", re.IGNORECASE)


def redact_conninfo(url: str) -> str:
    """Return a connection string (URL or ``key=value``) with every password replaced by ``***``."""
    if re.match(r"^\s*postgres(ql)?://", url):
        return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", url))
    return _KV_PASSWORD.sub(r"\1***", url)


_redact = redact_conninfo


def _scrub(text: str, url: str) -> str:
    """Remove the connection's password from a message that may quote it (a driver's error)."""
    try:
        password = psycopg.conninfo.conninfo_to_dict(url).get("password")
    except psycopg.Error:
        password = None
    text = redact_conninfo(text)
    return text.replace(str(password), "***") if password else text


def _validate_url(url: str) -> str:
    url = url.strip()
    if not url:
        raise DatabaseConfigError("DATABASE_URL is empty; unset it to use the embedded Postgres")
    if not re.match(r"^postgres(ql)?://", url):
        try:  # libpq also accepts "host=... dbname=..." strings.
            _check_port(psycopg.conninfo.conninfo_to_dict(url))
        except (psycopg.ProgrammingError, ValueError) as exc:
            raise DatabaseConfigError(
                f"DATABASE_URL {_redact(url)!r} is not a Postgres URL "
                f"(expected postgresql://user:password@host:port/dbname): {_scrub(str(exc), url)}"
            ) from None
        return url
    try:
        _check_port(psycopg.conninfo.conninfo_to_dict(url))
        urlsplit(url).port  # noqa: B018  (raises on a non-numeric port)
    except (psycopg.ProgrammingError, ValueError) as exc:
        raise DatabaseConfigError(f"DATABASE_URL {_redact(url)!r} is malformed: {_scrub(str(exc), url)}") from None
    return url


def _check_port(parts: dict[str, Any]) -> None:
    port = parts.get("port")
    if port is not None and not all(p.strip().isdigit() for p in str(port).split(",")):
        raise ValueError(f"the port must be a number, got {port!r}")


_HINTS = (
    ("does not exist", "create it, or fix the name in DATABASE_URL"),
    ("password authentication failed", "check the user and password in DATABASE_URL"),
    ("no pg_hba.conf entry", "the server refuses this user/host; check pg_hba.conf or DATABASE_URL"),
    ("permission denied", "grant the role CONNECT on the database, or use another role"),
    ("connection refused", "start the server, or fix the host and port in DATABASE_URL"),
    ("could not translate host name", "check the host name in DATABASE_URL"),
    ("timeout expired", "the server did not answer; check the host, port and firewall"),
)


def _first_attempt(url: str, timeout: float) -> None:
    """Connect once, so a refusal is reported with libpq's reason instead of a pool timeout."""
    try:
        kwargs = {k: v for k, v in connect_kwargs().items() if k != "row_factory"}
        with psycopg.connect(url, connect_timeout=max(1, min(int(timeout), 30)), **kwargs):
            pass
    except psycopg.OperationalError as exc:
        reason = " ".join(_scrub(str(exc), url).split())
        hint = next((h for needle, h in _HINTS if needle in reason.lower()), "check DATABASE_URL")
        raise DatabaseUnavailableError(
            f"cannot reach Postgres at {_redact(url)}: {reason} ({hint}; unset DATABASE_URL "
            "to use the embedded Postgres)"
        ) from None


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
    base = data_dir or default_data_dir(env)
    return start_embedded_postgres(base / "pg")


def open_pool(
    url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0, role: str | None = None,
    checkout_timeout: float = 120.0,
) -> ConnectionPool:
    """Open a psycopg pool (acting as ``role``, see :func:`connect_kwargs`) and check the server answers.

    ``timeout`` bounds the first connection; ``checkout_timeout`` how long a caller queues for a
    free connection before ``PoolTimeout`` (a burst of turns on a small machine queues, it does
    not fail: psycopg's default of 30 s failed 200 confirmations released at once on 2 cores).

    Raises:
        DatabaseUnavailableError: With libpq's reason (no such database or role, wrong
            password, connection refused...) and never the password.
    """
    _first_attempt(url, timeout)
    kwargs = connect_kwargs(role)
    pool: ConnectionPool = ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=checkout_timeout,
        kwargs=kwargs,
        open=False,
        name="airlock",
    )
    try:
        pool.open(wait=True, timeout=timeout)
    except Exception as exc:
        pool.close()
        # The chained exception could quote the connection string: keep only its type.
        raise DatabaseUnavailableError(
            f"cannot reach Postgres at {_redact(url)} within {timeout:.0f}s ({type(exc).__name__}). "
            "Check DATABASE_URL, or unset it to use the embedded Postgres."
        ) from None
    return pool


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    """One versioned SQL migration file."""

    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    """Return the engine's migrations shipped in ``graph/migrations``, ordered by version."""
    found = _read_folder(resources.files("graph") / "migrations", "graph/migrations")
    retired = sorted(_RETIRED_VERSIONS & {m.version for m in found})
    if retired:
        raise RuntimeError(f"graph/migrations reuses retired versions {retired}: pick another number")
    return found


def domain_migrations(plugin: DomainPlugin) -> list[Migration]:
    """Return a domain's migrations (its ``migrations`` folder), ordered by version."""
    if plugin.migrations is None:
        return []
    return _read_folder(plugin.migrations, f"the {plugin.name} domain's migrations")


def _read_folder(folder: Any, label: str) -> list[Migration]:
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(
                Migration(version=int(match[1]), name=match[2], sql=entry.read_text("utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in {label}: {versions}")
    return found


def applied_migrations(pool: ConnectionPool) -> list[int]:
    """Return the versions already applied to the database."""
    with pool.connection() as conn:
        exists = conn.execute("SELECT to_regclass('public.schema_migrations') AS t").fetchone()
        if not exists or exists["t"] is None:  # type: ignore[call-overload]
            return []
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    return [int(r["version"]) for r in rows]  # type: ignore[call-overload]


def applied_domain_migrations(pool: ConnectionPool, domain: str) -> list[int]:
    """Return the versions of ``domain``'s migrations already applied to the database."""
    with pool.connection() as conn:
        exists = conn.execute("SELECT to_regclass('public.domain_migrations') AS t").fetchone()
        if not exists or exists["t"] is None:  # type: ignore[call-overload]
            return []
        rows = conn.execute(
            "SELECT version FROM domain_migrations WHERE domain = %s ORDER BY version", (domain,)
        ).fetchall()
    return [int(r["version"]) for r in rows]  # type: ignore[call-overload]


def migrate(pool: ConnectionPool, *, domains: Sequence[DomainPlugin] | None = None) -> list[int]:
    """Apply pending engine migrations, then each domain's, in one transaction; return the engine versions applied.

    Domain migrations are recorded per domain in ``domain_migrations`` (their versions are
    the domain's own). A database migrated before a domain had its own folder recorded that
    domain's schema as engine versions: those are adopted (recorded, not run again) as the
    plugin's ``adopted_migrations`` says, judged on the engine versions recorded before this
    call. Safe to call from several processes at once: an advisory lock serialises them.

    Args:
        pool: An owner's pool.
        domains: The domains whose migrations to apply; None: the configured domain
            (:func:`graph.plugins.load_plugin`); ``()``: the engine's alone.
    """
    if domains is None:
        from graph.plugins import load_plugin

        domains = (load_plugin(),)
    applied_now: list[int] = []
    domain_applied: list[str] = []
    with pool.connection() as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_ID,))
            # Checked first: a role that may not create tables (the app's) can still see it is up to date.
            exists = conn.execute("SELECT to_regclass('public.schema_migrations') AS t").fetchone()
            if not exists or exists["t"] is None:  # type: ignore[call-overload]
                conn.execute(
                    "CREATE TABLE schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
            done = {
                int(r["version"])  # type: ignore[call-overload]
                for r in conn.execute("SELECT version FROM schema_migrations").fetchall()
            }
            before = frozenset(done)
            for migration in available_migrations():
                if migration.version in done:
                    continue
                _run(conn, migration, f"{migration.version:03d}_{migration.name}.sql")
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
                applied_now.append(migration.version)
            for plugin in domains:
                domain_applied += _migrate_domain(conn, plugin, before)
    if applied_now:
        log.info("applied migrations %s", applied_now)
    if domain_applied:
        log.info("applied domain migrations %s", domain_applied)
    return applied_now


def _run(conn: Any, migration: Migration, label: str) -> None:
    try:
        conn.execute(migration.sql, prepare=False)
    except psycopg.Error as exc:
        raise RuntimeError(f"migration {label} failed: {exc}") from exc


def _migrate_domain(conn: Any, plugin: DomainPlugin, engine_before: frozenset[int]) -> list[str]:
    """Apply (or adopt) one domain's pending migrations on ``conn``, inside the caller's transaction."""
    migrations = domain_migrations(plugin)
    if not migrations:
        return []
    exists = conn.execute("SELECT to_regclass('public.domain_migrations') AS t").fetchone()
    if exists["t"] is None:
        conn.execute(
            "CREATE TABLE domain_migrations ("
            " domain text NOT NULL, version integer NOT NULL, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now(), adopted boolean NOT NULL DEFAULT false,"
            " PRIMARY KEY (domain, version))"
        )
    done = {
        int(r["version"])
        for r in conn.execute("SELECT version FROM domain_migrations WHERE domain = %s", (plugin.name,)).fetchall()
    }
    applied: list[str] = []
    for migration in migrations:
        if migration.version in done:
            continue
        legacy = plugin.adopted_migrations.get(migration.version)
        adopted = legacy is not None and legacy in engine_before
        if not adopted:
            _run(conn, migration, f"{plugin.name}/{migration.version:03d}_{migration.name}.sql")
            applied.append(f"{plugin.name}/{migration.version:03d}")
        conn.execute(
            "INSERT INTO domain_migrations (domain, version, name, adopted) VALUES (%s, %s, %s, %s)",
            (plugin.name, migration.version, migration.name, adopted),
        )
    return applied
