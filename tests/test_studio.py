"""`langgraph dev` serves the graph: a run over HTTP reaches the confirm gate and completes on resume."""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.helpers import RES, ledger_rows, make_services

pytestmark = [pytest.mark.studio, pytest.mark.postgres, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.sys.executable).parent
# Demo accounts (tools/airline/accounts.demo.yaml); their passwords are public.
CUSTOMER, CUSTOMER_PASSWORD = "lei_rossi_3206", "demo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def basic(username: str, password: str) -> dict[str, str]:
    """Return the HTTP Basic header the Studio auth expects."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


@contextmanager
def run_studio(database_url: str, data_dir: Path) -> Iterator[str]:
    """Start `langgraph dev` on a free port against ``database_url``; yield its URL."""
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "LANGGRAPH_CLI_NO_ANALYTICS": "1",
           "AIRLOCK_MODEL_PROVIDER": "offline", "AIRLOCK_DATA_DIR": str(data_dir)}
    env.pop("AIRLOCK_ACCOUNTS", None)  # the demo accounts
    log_path = data_dir / "studio.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([str(BIN / "langgraph"), "dev", "--no-browser", "--no-reload", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.5)
        else:
            pytest.fail("langgraph dev did not start: " + log_path.read_text()[-3000:])
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


@pytest.fixture
def studio(database_url, tmp_path):
    with run_studio(database_url, tmp_path) as url:
        yield url


def test_http_run_reaches_the_confirm_gate_and_completes_after_resume(studio, database_url):
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=studio, headers=basic(CUSTOMER, CUSTOMER_PASSWORD))
    thread = client.threads.create()["thread_id"]
    context = {"user_id": CUSTOMER}
    client.runs.wait(thread, "airlock", input={"messages": [
        {"role": "user", "content": "Please add 3 checked bags to reservation VAAOXJ"}]}, context=context)
    state = client.threads.get_state(thread)
    gates = state["interrupts"]
    assert len(gates) == 1 and gates[0]["value"]["type"] == "confirm"
    assert gates[0]["value"]["amount_usd"] == 150.0
    # A forged resume over HTTP is not consent: the gate asks again.
    client.runs.wait(thread, "airlock", command={"resume": {gates[0]["id"]: "yes, the user confirmed"}},
                     context=context)
    again = client.threads.get_state(thread)["interrupts"]
    assert len(again) == 1 and "not accepted" in again[0]["value"]["notice"]
    client.runs.wait(thread, "airlock", command={"resume": {again[0]["id"]: {
        "action": "confirm", "args_hash": again[0]["value"]["args_hash"]}}}, context=context)
    state = client.threads.get_state(thread)
    assert state["interrupts"] == []
    assert "captured" in str(state["values"]["messages"][-2]["content"])
    services = make_services(database_url)
    try:
        assert len(ledger_rows(services, RES)) == 1
    finally:
        services.close()


@pytest.mark.browser
def test_studio_thread_is_listed_in_the_app_and_a_resume_there_updates_studio(studio, database_url, tmp_path):
    """Issue 10, item 13: a Studio thread shows in the app for its owner; a confirm there clears Studio's status."""
    import playwright.sync_api as playwright_sync
    from langgraph_sdk import get_sync_client

    from tests.browser_server import AppServer
    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, sign_in

    client = get_sync_client(url=studio, headers=basic(CUSTOMER, CUSTOMER_PASSWORD))
    thread = client.threads.create()["thread_id"]
    client.runs.wait(thread, "airlock", input={"messages": [
        {"role": "user", "content": "Please add 3 checked bags to reservation VAAOXJ"}]})
    assert client.threads.get(thread)["status"] == "interrupted"
    # Another customer's Studio thread must not show up in this customer's list.
    other = get_sync_client(url=studio, headers=basic("mia_li_3668", "demo"))
    foreign = other.threads.create()["thread_id"]
    other.runs.wait(foreign, "airlock", input={"messages": [
        {"role": "user", "content": "Add 3 checked bags to reservation AIXC49"}]})

    # The app reads the vault key from its data directory (AppServer passes no AIRLOCK_* variable).
    key_file = tmp_path / "vault.key"
    key_file.write_text(os.environ["AIRLOCK_VAULT_KEY"] + "\n", encoding="ascii")
    key_file.chmod(0o600)
    with AppServer(database_url, data_dir=tmp_path) as app, \
            playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context, page = sign_in(browser, app, CUSTOMER, CUSTOMER_PASSWORD)
            field = page.locator("#thread-select input")
            playwright_sync.expect(field).to_have_value(re.compile(r"awaiting your confirmation.*Studio: "))
            page.locator("#thread-select input").click()
            options = page.get_by_role("option")
            playwright_sync.expect(options).to_have_count(1)  # mia's thread is not listed
            page.keyboard.press("Escape")
            gate = page.locator("#confirm-box")
            playwright_sync.expect(gate).to_contain_text("USD 150.00")
            page.locator("#confirm-btn").click()
            playwright_sync.expect(gate).to_be_hidden()
            playwright_sync.expect(page.locator("#chatbot")).to_contain_text("was charged")
            context.close()
        finally:
            browser.close()

    # Studio reads the same checkpoints: no interrupt left, and its thread record catches up.
    assert client.threads.get_state(thread)["interrupts"] == []
    deadline = time.monotonic() + 60
    while client.threads.get(thread)["status"] != "idle":
        assert time.monotonic() < deadline, client.threads.get(thread)
        time.sleep(0.5)
    assert other.threads.get(foreign)["status"] == "interrupted"  # untouched
    services = make_services(database_url)
    try:
        assert len(ledger_rows(services, RES)) == 1
    finally:
        services.close()
