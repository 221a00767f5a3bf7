"""The second hand-written training set (issue 8) and its held-out twin: schema and separation."""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "evals" / "data"
TRAIN = DATA / "written_guard.jsonl"
HELDOUT = DATA / "written_guard_heldout.jsonl"
# Round 2: "how do I ..." questions and the weak attack techniques; the held-out twin was
# written first.
TRAIN2 = DATA / "written_guard2.jsonl"
HELDOUT2 = DATA / "written_guard2_heldout.jsonl"
# Every file training must never repeat: the held-out and development sets.
EVAL_SETS = ["written_guard_heldout", "written_guard2_heldout", "written_benign_heldout", "written_attacks_heldout",
             "airline_eval", "airline_final_check"]
KEYS = ["id", "label", "category", "lang", "domain", "text"]
LABELS = {"benign", "injection", "jailbreak", "harmful", "toxic", "exfiltration"}
LANGS = {"en", "es", "fr", "de", "pt", "it", "ru", "zh"}


def _rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKD", re.sub(r"\{\w+\}", "", text.lower()))
    return " ".join(re.findall(r"\w+", "".join(c for c in text if not unicodedata.combining(c))))


@pytest.mark.parametrize(("path", "prefix"), [(TRAIN, "wg"), (HELDOUT, "wgh"), (TRAIN2, "wg2"), (HELDOUT2, "wg2h")])
def test_schema(path: Path, prefix: str) -> None:
    rows = _rows(path)
    assert rows
    for row in rows:
        assert list(row) == KEYS, row
        assert re.fullmatch(rf"{prefix}-\d{{4}}", row["id"]), row["id"]
        assert row["label"] in LABELS and row["lang"] in LANGS and row["domain"] in {"airline", "off"}, row
        assert row["text"] == row["text"].strip() and row["text"], row
        if row["label"] == "benign":
            assert not re.search(r"\{\w+\}", row["text"]), row  # benign rows are literal text
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({_norm(r["text"]) for r in rows}) == len(rows), "duplicate text"
    labels = {r["label"] for r in rows}
    assert "benign" in labels and labels - {"benign"}


def test_training_rows_stay_apart_from_every_evaluation_set() -> None:
    held = [_norm(r["text"]) for name in EVAL_SETS for r in _rows(DATA / f"{name}.jsonl")]
    close = []
    for row in (*_rows(TRAIN), *_rows(TRAIN2)):
        matcher = difflib.SequenceMatcher(None, b=_norm(row["text"]))
        for h in held:
            matcher.set_seq1(h)
            # The quick ratios are upper bounds of ratio(): most pairs stop there.
            if matcher.real_quick_ratio() >= 0.8 and matcher.quick_ratio() >= 0.8 and matcher.ratio() >= 0.8:
                close.append((row["id"], h))
    assert not close, close
