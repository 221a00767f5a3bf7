"""One exception root: every exception class airlock defines derives from AirlockError, and the edges catch it."""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

from graph.errors import AirlockError

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("graph", "nodes", "ui", "tools")


def _modules() -> list[str]:
    names: list[str] = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        names.extend(info.name for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."))
    return sorted(names)


def test_every_exception_class_derives_from_airlock_error():
    strays: list[str] = []
    seen = 0
    for name in _modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name or not issubclass(cls, BaseException):
                continue
            seen += 1
            if not issubclass(cls, AirlockError):
                strays.append(f"{name}.{cls.__qualname__}")
    assert seen > 30, "the walk found too few exception classes to mean anything"
    assert strays == []


def _builtin_exception(name: str) -> bool:
    value = getattr(builtins, name, None)
    return isinstance(value, type) and issubclass(value, BaseException)


def test_no_class_anywhere_derives_only_from_builtin_exceptions():
    # Classes nested in functions are invisible to the import walk: read the source as well.
    strays: list[str] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if isinstance(node, ast.ClassDef) and node.name != "AirlockError" and node.bases and all(
                        isinstance(b, ast.Name) and _builtin_exception(b.id) for b in node.bases):
                    strays.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert strays == []


@pytest.mark.parametrize("edge", ["ui/cli.py", "ui/scan.py"])
def test_the_command_line_edges_catch_airlock_error_not_exception(edge):
    tree = ast.parse((ROOT / edge).read_text("utf-8"))
    caught = [ast.unparse(h.type) for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler) and h.type]
    assert "AirlockError" in caught
    assert "Exception" not in caught and "BaseException" not in caught


def test_the_cli_reports_an_airlock_error_in_one_line_and_keeps_a_bug_loud(monkeypatch, capsys):
    import ui.cli as cli

    def refuse(args):
        raise AirlockError("the policy says no")

    monkeypatch.setattr(cli, "cmd_graph", refuse)
    assert cli.main(["graph"]) == 2
    assert capsys.readouterr().err.strip() == "airlock: the policy says no"

    def bug(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "cmd_graph", bug)
    with pytest.raises(ZeroDivisionError):
        cli.main(["graph"])
