"""The engine's write-request statements take plain table names only, quoted as identifiers."""

from __future__ import annotations

import pytest

from graph.write_fence import WriteRequests


@pytest.mark.parametrize("table", ["", "Write", "w; DROP TABLE x", 'w"x', "public.w", "1w", "w" * 64])
def test_a_table_name_that_is_not_a_plain_sql_name_is_refused(table):
    with pytest.raises(ValueError):
        WriteRequests(table, error=RuntimeError)


def test_a_tagged_table_is_checked_like_the_requests_table():
    with pytest.raises(ValueError):
        WriteRequests("w", error=RuntimeError, tagged=("ledger", "events; --"))


def test_plain_names_are_accepted():
    WriteRequests("airline_write_requests", error=RuntimeError, tagged=("payments_ledger", "airline_events"))
