"""The hand-written benign sets: schema, coverage, and a held-out file that shares no text."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "evals" / "data"
TRAIN = DATA / "written_benign.jsonl"
HELDOUT = DATA / "written_benign_heldout.jsonl"
# Sets a written_benign row must never repeat: the development and final held-out sets.
EVAL_SETS = [DATA / "airline_eval.jsonl", DATA / "airline_final_check.jsonl"]
KEYS = ["id", "label", "category", "lang", "domain", "text"]
CATEGORIES = {
    "small_talk",
    "human_agent",
    "complaint",
    "quoted_text",
    "sensitive_legit",
    "other_domain",
    "airline_ops",
    "security_privacy",
}
LANGS = {"en", "es", "fr", "de", "pt", "it"}


def _rows(path: Path) -> list[dict[str, str]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:  # name the line so the file can be fixed
            raise AssertionError(f"{path.name}:{n} is not JSON: {exc}") from exc
    return rows


def _norm(text: str) -> str:
    # Accents, case and punctuation removed: "AGENT!!" and "agent" are the same message.
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.findall(r"[a-z0-9]+", text))


@pytest.mark.parametrize(("path", "prefix"), [(TRAIN, "wb"), (HELDOUT, "wbh")])
def test_every_row_has_the_schema(path: Path, prefix: str) -> None:
    rows = _rows(path)
    assert rows, f"{path.name} is empty"
    for row in rows:
        assert list(row) == KEYS, row
        assert re.fullmatch(rf"{prefix}-\d{{4}}", row["id"]), row["id"]
        assert row["label"] == "benign"
        assert row["category"] in CATEGORIES, row
        assert row["lang"] in LANGS, row
        assert row["domain"] in {"airline", "off"}, row
        assert row["text"] and row["text"] == row["text"].strip(), row
        # Literal text only: these files are not slot templates.
        assert not re.search(r"\{[a-z_0-9]+\}", row["text"]), row
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({_norm(r["text"]) for r in rows}) == len(rows), "duplicate text"


@pytest.mark.parametrize("path", [TRAIN, HELDOUT])
def test_every_category_is_written_in_every_language(path: Path) -> None:
    rows = _rows(path)
    pairs = Counter((r["category"], r["lang"]) for r in rows)
    missing = {(c, lang) for c in CATEGORIES for lang in LANGS if not pairs[(c, lang)]}
    assert not missing, sorted(missing)
    english = sum(r["lang"] == "en" for r in rows) / len(rows)
    assert 0.4 <= english <= 0.6, english


def test_held_out_shares_no_text_with_training() -> None:
    train = {_norm(r["text"]) for r in _rows(TRAIN)}
    shared = [r["text"] for r in _rows(HELDOUT) if _norm(r["text"]) in train]
    assert not shared, shared


def test_training_rows_repeat_no_evaluation_message() -> None:
    held_out = {_norm(r["text"]) for path in EVAL_SETS for r in _rows(path)}
    leaked = [r["text"] for r in _rows(TRAIN) if _norm(r["text"]) in held_out]
    assert not leaked, leaked
