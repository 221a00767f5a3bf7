"""The engine knows no domain: no import of ``tools.*`` in graph/, nodes/, ui/; the domain comes from configuration.

The first test reads the engine's source the way an attacker of the boundary would hide an
import: plain ``import tools.x``, ``from tools import x``, ``from tools.x import y``, and
``importlib.import_module("tools.x")`` / ``__import__("tools.x")`` / ``find_spec`` with a
literal (or an f-string whose literal part names a domain). The loader tests use the real
``graph.plugins`` and the real airline package.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graph.domain import DomainPlugin
from graph.plugins import (
    DomainConfigError,
    UnknownDomainError,
    available_domains,
    load_plugin,
    resolve_domain_name,
)
from graph.policy import PolicyError, load_policy

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ("graph", "nodes", "ui")
_DOMAIN_LITERAL = re.compile(r"^tools(\.|$)")
_IMPORTERS = {"import_module", "__import__", "find_spec", "import_string", "spec_from_file_location"}


def _engine_files() -> list[Path]:
    files = [p for pkg in ENGINE for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 50  # the scan really reads the engine
    return files


def _literal_prefix(node: ast.expr) -> str | None:
    """Return the constant text a call argument starts with (a str literal or an f-string's head)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        head = node.values[0]
        if isinstance(head, ast.Constant) and isinstance(head.value, str):
            return head.value
    return None


def domain_imports(source: str) -> list[str]:
    """Return every import of ``tools`` or of a domain package in ``source`` (as ``line: what``)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if _DOMAIN_LITERAL.match(a.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and _DOMAIN_LITERAL.match(node.module):
                found.append(f"{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in _IMPORTERS and node.args:
                text = _literal_prefix(node.args[0])
                # "tools." followed by a name is a specific domain; the bare package is allowed only
                # to list the domains (find_spec("tools")).
                if text is not None and re.match(r"^tools\.[A-Za-z_]", text):
                    found.append(f"{node.lineno}: {name}({text!r})")
    return found


def test_the_scanner_finds_every_form_of_domain_import() -> None:
    source = '''
import tools.airline
import tools
from tools.airline.planner import AirlinePlanner
from tools import airline
import importlib
importlib.import_module("tools.retail")
__import__("tools.airline.domain")
importlib.util.find_spec(f"tools.airline{suffix}")
from graph.plugins import load_plugin            # fine
importlib.import_module(f"{package}.{name}")     # fine: configured, not literal
importlib.util.find_spec("tools")                # fine: lists domains
'''
    found = domain_imports(source)
    assert [f.split(":")[0] for f in found] == ["2", "3", "4", "5", "7", "8", "9"], found


@pytest.mark.parametrize("path", _engine_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_module_imports_no_domain(path: Path) -> None:
    assert domain_imports(path.read_text(encoding="utf-8")) == []


def test_the_engine_holds_no_airline_migration() -> None:
    engine_sql = "\n".join(p.read_text() for p in (ROOT / "graph" / "migrations").glob("*.sql"))
    assert "airline_" not in engine_sql and "payments_ledger" not in engine_sql


# -- the loader ---------------------------------------------------------------------------------


def test_default_domain_is_the_airline() -> None:
    assert resolve_domain_name(environ={}) == "airline"
    plugin = load_plugin(environ={})
    assert isinstance(plugin, DomainPlugin) and plugin.name == "airline"
    assert plugin.policy_path.is_file() and plugin.migrations is not None
    assert plugin.output.handoff_tool in plugin.tools
    # The default policy validates against the plugin's own tools and facts (what `airlock policy` runs).
    policy = load_policy(plugin.policy_path, known_tools=plugin.tools, facts=plugin.neutral_facts())
    assert policy.tools


def test_unknown_domain_is_a_clear_error_naming_the_choices() -> None:
    with pytest.raises(UnknownDomainError) as err:
        load_plugin(environ={"AIRLOCK_DOMAIN": "bakery"})
    message = str(err.value)
    assert "bakery" in message and "airline" in message and "available domains" in message
    assert "airline" in available_domains()
    for bad in ("../airline", "Tools.Airline", "airline;rm", "tools.airline.nope", "nosuch.module"):
        with pytest.raises(DomainConfigError):
            load_plugin(bad)


def test_a_package_without_a_plugin_is_refused() -> None:
    with pytest.raises(DomainConfigError, match="no plugin"):
        load_plugin("tests.helpers")  # a real module, but no plugin()


def test_policy_domain_key_chooses_the_domain(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\ndomain: tests.domains.minimal\ntools: {}\n")
    assert resolve_domain_name(policy_path=policy, environ={}) == "tests.domains.minimal"
    assert resolve_domain_name(environ={"AIRLOCK_POLICY": str(policy)}) == "tests.domains.minimal"
    assert load_plugin(policy_path=policy, environ={}).name == "minimal"
    # The environment and the file must agree.
    with pytest.raises(DomainConfigError, match="make them agree"):
        resolve_domain_name(policy_path=policy, environ={"AIRLOCK_DOMAIN": "airline"})
    assert resolve_domain_name(policy_path=policy, environ={"AIRLOCK_DOMAIN": "tests.domains.minimal"})


def test_policy_domain_key_is_validated(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\ndomain: 'air line'\n")
    with pytest.raises(PolicyError, match="domain"):
        load_policy(policy)


def test_airlock_policy_refuses_a_policy_for_another_domain(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from ui.cli import main

    monkeypatch.delenv("AIRLOCK_DOMAIN", raising=False)
    airline = load_plugin("airline")
    copy = tmp_path / "airline.yaml"
    copy.write_text(airline.policy_path.read_text().replace("name: airline\n", "name: airline\ndomain: airline\n"))
    assert main(["policy", str(copy)]) == 0
    monkeypatch.setenv("AIRLOCK_DOMAIN", "tests.domains.minimal")
    assert main(["policy", str(copy)]) == 1
    assert "make them agree" in capsys.readouterr().err


# -- domain migrations: namespaced, and adopted from a database migrated before the move --------


@pytest.fixture
def empty_pool(server_url: str) -> Iterator[Any]:
    """An empty database (no template), dropped afterwards."""
    import uuid

    from psycopg import sql

    from graph.db import open_pool
    from tests.conftest import _admin, _with_db, drop_database

    name = f"airlock_port_{uuid.uuid4().hex[:10]}"
    with _admin(server_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    pool = open_pool(_with_db(server_url, name), max_size=2)
    try:
        yield pool
    finally:
        pool.close()
        drop_database(server_url, name)


def _domain_rows(pool: Any) -> list[tuple[str, int, bool]]:
    with pool.connection() as conn:
        rows = conn.execute("SELECT domain, version, adopted FROM domain_migrations ORDER BY 1, 2").fetchall()
    return [(r["domain"], r["version"], r["adopted"]) for r in rows]


def _columns(pool: Any, table: str) -> set[str]:
    with pool.connection() as conn:
        rows = conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                            (table,)).fetchall()
    return {r["column_name"] for r in rows}


@pytest.mark.postgres
def test_a_fresh_database_gets_each_domains_migrations_under_its_name(empty_pool: Any) -> None:
    from graph.db import applied_domain_migrations, migrate

    airline, minimal = load_plugin("airline"), load_plugin("tests.domains.minimal")
    migrate(empty_pool, domains=(airline,))
    assert _domain_rows(empty_pool) == [("airline", 2, False), ("airline", 5, False)]
    assert "conversation_id" in _columns(empty_pool, "payments_ledger")
    # A second domain in the same database: its version 1 is its own, the airline's are untouched.
    assert migrate(empty_pool, domains=(minimal,)) == []
    assert applied_domain_migrations(empty_pool, "minimal") == [1]
    assert applied_domain_migrations(empty_pool, "airline") == [2, 5]
    assert migrate(empty_pool, domains=(airline, minimal)) == [] and len(_domain_rows(empty_pool)) == 3


@pytest.mark.postgres
def test_a_database_migrated_before_the_move_adopts_the_airline_schema(empty_pool: Any) -> None:
    from graph.db import domain_migrations, migrate

    airline = load_plugin("airline")
    # Rebuild the old layout: the airline schema applied as engine migrations 002 and 005 (with data).
    migrate(empty_pool, domains=())
    with empty_pool.connection() as conn, conn.transaction():
        for m in domain_migrations(airline):
            conn.execute(m.sql, prepare=False)
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (2, 'airline')")
        conn.execute("""INSERT INTO airline_users (user_id, doc) VALUES ('kept_user_1', '{}')""")
    # Upgrading must neither re-run them (CREATE TABLE would fail) nor lose data.
    assert migrate(empty_pool, domains=(airline,)) == []
    assert _domain_rows(empty_pool) == [("airline", 2, True), ("airline", 5, True)]
    with empty_pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM airline_users").fetchone()["n"] == 1
    assert migrate(empty_pool, domains=(airline,)) == []  # and once adopted, settled


def test_engine_migrations_never_reuse_a_retired_version() -> None:
    from graph.db import available_migrations

    assert 2 not in {m.version for m in available_migrations()}


def test_offline_provider_needs_the_domains_planner() -> None:
    from nodes.model import ModelConfigError, ModelSettings, OfflinePlanner, describe_model, make_chat_model

    with pytest.raises(ModelConfigError, match="minimal domain has no offline planner"):
        make_chat_model(ModelSettings(provider="offline"), offline=None, domain="minimal")
    airline = load_plugin("airline")
    planner = make_chat_model(ModelSettings(provider="offline"), offline=airline.offline_planner)
    assert isinstance(planner, OfflinePlanner) and describe_model(planner).startswith("offline")
    with pytest.raises(NotImplementedError):  # the generic base plans nothing by itself
        OfflinePlanner().plan([])


def test_settings_carry_the_domain() -> None:
    from graph.runtime import AirlockSettings

    assert AirlockSettings.from_env({"AIRLOCK_DOMAIN": " retail "}).domain == "retail"
    assert AirlockSettings.from_env({}).domain is None
    assert AirlockSettings.from_env({"AIRLOCK_DOMAIN": "retail"}, domain="airline").domain == "airline"


def test_a_plugin_with_broken_declarations_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses
    import sys
    import types

    good = load_plugin("tests.domains.minimal")
    cases = {
        "hand-off tool": {"output": dataclasses.replace(good.output, handoff_tool="nope")},
        "does not exist": {"policy_path": tmp_path / "missing.yaml"},
        "no tools": {"tools": {}},
        "system prompt": {"system_prompt": "  "},
    }
    for i, (problem, change) in enumerate(cases.items()):
        module = types.ModuleType(f"broken{i}")
        bad = dataclasses.replace(good, name=f"broken{i}", **change)
        module.plugin = lambda bad=bad: bad  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, f"fake_pkg.broken{i}", module)
        with pytest.raises(DomainConfigError, match=problem):
            load_plugin(f"fake_pkg.broken{i}")
