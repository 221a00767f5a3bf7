"""Operational errors name the real cause, never print a password, and an expected refusal is one log line.

A database that does not exist, a role the server refuses, a wrong password or a server that is
not listening must each be reported with libpq's own reason at the first attempt (not as
"PoolTimeout" after the pool's timeout); a ``key=value`` connection string or a URL with a
password never shows that password in the error or the log; and a refused request in the web
app logs one line instead of Gradio's traceback.
"""

from __future__ import annotations

import logging
import socket
from types import SimpleNamespace

import psycopg
import pytest

from graph.db import DatabaseConfigError, DatabaseUnavailableError, open_pool, redact_conninfo, resolve_database_url

SECRET = "s3cr3t-Pa55-XYZ"


def _parts(url: str) -> dict[str, str]:
    return {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(url).items()}


def _kv(**parts: str) -> str:
    return " ".join(f"{k}={v}" for k, v in parts.items())


def _closed_port() -> int:
    with socket.socket() as sock:  # bound, never listening: connections are refused at once
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The pool timeout is huge on purpose: an implementation that waits for it instead of reporting
# the first attempt's cause never returns, and pytest-timeout fails the test.
@pytest.mark.postgres
@pytest.mark.timeout(120)
@pytest.mark.parametrize(("change", "cause"), [
    ({"dbname": "airlock_no_such_db"}, 'database "airlock_no_such_db" does not exist'),
    ({"user": "airlock_no_such_role"}, 'role "airlock_no_such_role" does not exist'),
])
def test_missing_database_or_role_is_reported_with_the_real_cause(database_url, caplog, change, cause):
    parts = {**_parts(database_url), **change, "password": SECRET}
    for url in (_kv(**parts),
                f"postgresql://{parts['user']}:{SECRET}@{parts.get('host', '127.0.0.1')}:"
                f"{parts.get('port', '5432')}/{parts['dbname']}"):
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(DatabaseUnavailableError) as info:
                open_pool(resolve_database_url(url), timeout=3600)
        message = str(info.value)
        assert cause in message, message
        assert "PoolTimeout" not in message
        assert SECRET not in message and SECRET not in caplog.text
        assert SECRET not in repr(info.value.__cause__ or "")


@pytest.mark.timeout(120)
def test_server_not_listening_is_reported_as_refused():
    url = _kv(host="127.0.0.1", port=str(_closed_port()), dbname="x", user="u", password=SECRET)
    with pytest.raises(DatabaseUnavailableError) as info:
        open_pool(url, timeout=3600)
    assert "Connection refused" in str(info.value) or "connection refused" in str(info.value).lower()
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("url", [
    f"host=127.0.0.1 port=notaport password={SECRET}",
    f"host=127.0.0.1 password='{SECRET}' bogus_option=1",
    f"postgresql://u:{SECRET}@127.0.0.1:notaport/db",
    f"postgresql://127.0.0.1/db?password={SECRET}&port=x",
    f"postgresql://127.0.0.1/db?password={SECRET}&bogus=1",
])
def test_malformed_connection_string_never_prints_its_password(url):
    with pytest.raises(DatabaseConfigError) as info:
        open_pool(resolve_database_url(url), timeout=1)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("url", [
    f"host=h password={SECRET} user=u",
    f"host=h password = '{SECRET} with space' user=u",
    f"postgresql://u:{SECRET}@h/db",
    f"postgresql://h/db?sslmode=require&password={SECRET}",
])
def test_redact_conninfo(url):
    shown = redact_conninfo(url)
    assert SECRET not in shown and "***" in shown and "h" in shown


def test_expected_refusal_in_the_web_app_is_one_log_line_without_traceback(tmp_path, caplog):
    from tests.test_ui_auth import make_ui

    ui, _ = make_ui(tmp_path)
    import gradio as gr

    caplog.set_level(logging.INFO)
    request = SimpleNamespace(username="bob_smith_1")
    with pytest.raises(gr.Error) as info:
        ui.decide_review("r1", "approve", "", "", request)
    # Gradio prints the whole traceback of an Error unless told not to.
    assert info.value.print_exception is False
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].exc_info is None
    assert "\n" not in refusals[0].getMessage()
