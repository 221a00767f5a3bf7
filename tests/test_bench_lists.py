"""``airlock bench lists`` end to end, tiny: it seeds a scratch database, measures, drops it."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from evals.bench_lists import main

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _databases(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'airlock_bench_lists_%'")
        return {r[0] for r in rows}


def test_bench_lists_measures_old_and_new_on_a_scratch_database(server_url: str, tmp_path: Path) -> None:
    before = _databases(server_url)
    out = tmp_path / "bench_lists.json"
    code = main(["--threads", "4", "--turns", "2", "--reviews", "60", "--runs", "2", "--database-url", server_url,
                 "--json", str(out)])
    results = json.loads(out.read_text())
    assert code == 0, results
    rows = results["rows"]
    assert rows["threads, new (table only)"]["listed"] == 4
    assert rows["threads, old (table + get_state per thread)"]["listed"] == 4
    assert rows["inbox first page, new (true count)"]["total"] == 60
    assert rows["inbox page ~100 deep, new (cursor)"]["start"] == 50  # the second (last) page here
    assert _databases(server_url) == before  # dropped
