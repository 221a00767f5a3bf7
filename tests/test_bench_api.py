"""``airlock bench api`` end to end with a tiny duration: both ways measured, no errors, reports written."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from evals.bench_api import main
from tests.conftest import ROOT, drop_database, make_database

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def database(server_url: str) -> Iterator[str]:
    name, url = make_database(server_url)
    yield url
    drop_database(server_url, name)


def test_bench_api_measures_http_and_in_process_turns(database: str, tmp_path: Path) -> None:
    out, md = tmp_path / "bench_api.json", tmp_path / "bench_api.md"
    code = main(["--clients", "4", "--seconds", "2", "--slices", "2", "--workers", "2", "--database-url", database,
                 "--json", str(out), "--markdown", str(md)])
    results = json.loads(out.read_text())
    assert code == 0, results
    assert results["clients"] == 4 and results["workers"] == 2 and results["slices"] == 2
    for way in ("http", "in_process"):
        r = results[way]
        assert r["errors"] == 0 and r["turns"] >= 4, r
        assert 0 < r["first_event_p50_ms"] <= r["turn_p50_ms"] and r["turn_p50_ms"] <= r["turn_p95_ms"]
    assert results["http_over_in_process_p50"] > 0
    assert "| HTTP (SSE) |" in md.read_text() and "| in process |" in md.read_text()


def test_bench_api_help_and_bad_flags() -> None:
    shown = subprocess.run([sys.executable, "-m", "ui.cli", "bench", "api", "--help"], cwd=ROOT, capture_output=True,
                           text=True, check=False)
    assert shown.returncode == 0 and "--clients" in shown.stdout and "--seconds" in shown.stdout
    bad = subprocess.run([sys.executable, "-m", "ui.cli", "bench", "api", "--clients", "0"], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "--clients" in bad.stderr and "Traceback" not in bad.stderr
