"""Persistence: the embedded pgserver path, migrations, and clear errors for bad URLs."""

from __future__ import annotations

import pytest

from graph.db import (
    DatabaseConfigError,
    DatabaseUnavailableError,
    applied_migrations,
    available_migrations,
    migrate,
    open_pool,
    resolve_database_url,
)
from graph.runtime import AirlockServices, AirlockSettings
from graph.service import AirlockApp
from tests.helpers import USER, bags_call, summarise


@pytest.mark.postgres
@pytest.mark.slow
def test_embedded_pgserver_runs_the_app_and_keeps_a_paused_thread(tmp_path, monkeypatch, capsys):
    """Without DATABASE_URL the app starts pgserver under the data dir and works end to end."""
    from nodes.model.scripted import ScriptedChatModel

    settings = AirlockSettings(database_url=None, data_dir=tmp_path / "data", model_provider="offline")
    url = resolve_database_url(None, environ={}, data_dir=settings.data_dir)
    assert "host=" in url and str(tmp_path) in url  # a unix socket inside our data dir
    services = AirlockServices.start(settings)
    try:
        assert [m.version for m in available_migrations()] == applied_migrations(services.pool)
        app = AirlockApp(services=services, model=ScriptedChatModel(script=[bags_call(4, 3), summarise]))
        thread = app.new_thread(user_id=USER)
        paused = app.send(thread_id=thread, user_id=USER, text="add 3 bags to VAAOXJ")
        assert [p.kind for p in paused.pending] == ["confirm"]
    finally:
        services.close()
    # A second start (a restart) finds the same data and the paused thread.
    services = AirlockServices.start(settings)
    try:
        app = AirlockApp(services=services, model=ScriptedChatModel(script=[summarise]))
        assert [p.kind for p in app.pending(thread)] == ["confirm"]
        assert migrate(services.pool) == []  # nothing to apply twice
    finally:
        services.close()
        from ui.cli import main

        monkeypatch.setenv("AIRLOCK_DATA_DIR", str(settings.data_dir))
        assert main(["db", "stop"]) == 0
    assert "stopped the embedded Postgres" in capsys.readouterr().out
    with pytest.raises(DatabaseUnavailableError):
        open_pool(url, timeout=1.0)


@pytest.mark.parametrize("url", ["mysql://root@localhost/x", "postgresql://host:notaport/db", "  "])
def test_malformed_database_url_is_refused_clearly(url):
    with pytest.raises(DatabaseConfigError, match="DATABASE_URL"):
        resolve_database_url(url)


def test_unreachable_server_gives_a_clear_error():
    with pytest.raises(DatabaseUnavailableError, match="cannot reach Postgres"):
        open_pool("postgresql://nobody:secret@127.0.0.1:1/none", timeout=1.5)


def test_password_is_not_echoed_in_errors():
    with pytest.raises(DatabaseUnavailableError) as info:
        open_pool("postgresql://nobody:hunter2@127.0.0.1:1/none", timeout=1.0)
    assert "hunter2" not in str(info.value)


@pytest.mark.postgres
def test_migrations_apply_once_even_concurrently(server_url):
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import drop_database, make_database

    name, _ = make_database(server_url)
    drop_database(server_url, name)
    import psycopg
    from psycopg import sql

    from tests.conftest import _admin, _with_db

    fresh = f"{name}_empty"
    with _admin(server_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(fresh)))
    pool = open_pool(_with_db(server_url, fresh), max_size=8)
    try:
        with ThreadPoolExecutor(4) as ex:
            results = list(ex.map(lambda _: migrate(pool), range(4)))
        applied = [v for r in results for v in r]
        assert sorted(applied) == [m.version for m in available_migrations()]
        assert isinstance(psycopg.__version__, str)
    finally:
        pool.close()
        drop_database(server_url, fresh)
