"""The README's promises: its graph picture is the graph, and its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from graph.builder import build_graph
from tests.helpers import make_services

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.postgres
def test_readme_mermaid_is_generated_from_the_graph(database_url):
    services = make_services(database_url)
    try:
        generated = build_graph(services=services).get_graph().draw_mermaid().strip()
    finally:
        services.close()
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```mermaid\n(.*?)```", readme, re.S)
    assert block, "README has no mermaid block"
    assert block[1].strip() == generated, "README graph is stale: paste the output of `airlock graph`"


def test_readme_names_the_two_commands_and_ci_runs_the_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
