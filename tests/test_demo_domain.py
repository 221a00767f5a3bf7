"""The demo serves one domain, chosen in one place: accounts, example prompts and services agree."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import ui.app
from graph.plugins import DOMAIN_ENV, load_plugin
from tools.airline.examples import app_prompts as airline_prompts
from tools.retail.examples import app_prompts as retail_prompts
from ui.app import demo_accounts_note, example_prompts
from ui.auth import load_accounts
from ui.cli import main

ROOT = Path(__file__).resolve().parents[1]
AIRLINE_WORDS = re.compile(r"flight|reservation|airline|baggage|lei_rossi|harper_lopez|mia_li", re.I)


def test_the_example_prompts_are_the_served_domains():
    retail = load_plugin("retail")
    assert example_prompts("raj_sanchez_2970", plugin=retail) == retail_prompts("raj_sanchez_2970")
    assert example_prompts(None, plugin=retail) == retail_prompts(None)
    assert not any(AIRLINE_WORDS.search(p) for p in example_prompts("raj_sanchez_2970", plugin=retail))
    assert example_prompts("lei_rossi_3206", plugin=load_plugin("airline")) == airline_prompts("lei_rossi_3206")


def test_the_sign_in_note_lists_the_served_domains_demo_accounts():
    retail = load_accounts(ROOT / "tools" / "retail" / "accounts.demo.yaml")
    note = demo_accounts_note(retail)
    for name in ("raj_sanchez_2970", "mia_moore_8366", "sam"):
        assert f"<code>{name}</code>" in note
    assert not AIRLINE_WORDS.search(note), note
    airline = demo_accounts_note(load_accounts(ROOT / "tools" / "airline" / "accounts.demo.yaml"))
    assert "<code>lei_rossi_3206</code>" in airline and "raj_sanchez_2970" not in airline


@pytest.mark.parametrize("path", ["tools/airline/accounts.demo.yaml", "tools/retail/accounts.demo.yaml"])
def test_the_published_demo_passwords_are_the_ones_the_note_gives(path: str):
    accounts = load_accounts(ROOT / path)
    for account in accounts.accounts.values():
        password = "demo" if "customer" in account.roles else "review"
        assert accounts.authenticate(account.username, password) is not None, account.username


def test_an_accounts_file_of_your_own_gets_no_note(tmp_path: Path):
    own = tmp_path / "accounts.yaml"
    text = (ROOT / "tools" / "retail" / "accounts.demo.yaml").read_text(encoding="utf-8")
    own.write_text(text.replace("demo: true\n", ""), encoding="utf-8")
    assert demo_accounts_note(load_accounts(own)) == ""


def _capture_launch(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace the app's launch; clear the domain settings (the demo writes its choice back)."""
    for name in (DOMAIN_ENV, "AIRLOCK_POLICY"):
        monkeypatch.setenv(name, "")  # recorded first, so the value cmd_demo sets is undone too
        monkeypatch.delenv(name)
    seen: dict[str, Any] = {}

    def launch(**kwargs: Any) -> int:
        import os

        seen.update(kwargs, env=os.environ.get(DOMAIN_ENV))
        return 0

    monkeypatch.setattr(ui.app, "launch", launch)
    return seen


def test_demo_domain_option_serves_the_store(monkeypatch: pytest.MonkeyPatch):
    seen = _capture_launch(monkeypatch)
    assert main(["demo", "--domain", "retail", "--port", "7999"]) == 0
    # The settings and the environment the app's accounts and prompts read name the same domain.
    assert seen["settings"].domain == "retail" and seen["env"] == "retail" and seen["port"] == 7999


def test_demo_without_a_domain_serves_the_airline(monkeypatch: pytest.MonkeyPatch):
    seen = _capture_launch(monkeypatch)
    assert main(["demo"]) == 0
    assert seen["settings"].domain == "airline" and seen["env"] == "airline"


def test_demo_refuses_an_unknown_domain_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    seen = _capture_launch(monkeypatch)
    assert main(["demo", "--domain", "shop"]) == 2
    err = capsys.readouterr().err
    assert "unknown domain 'shop'" in err and "retail" in err and "Traceback" not in err
    assert seen == {}


def test_make_demo_passes_the_domain():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^demo:.*\n\t(.*)$", makefile, re.M)
    assert recipe and "AIRLOCK_DOMAIN=$(DOMAIN)" in recipe[1] and "airlock demo" in recipe[1]
