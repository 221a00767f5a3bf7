"""Recall of the PII layer on long texts: the labelled messages packed up to the length limits.

The PII evaluation (``python -m evals.pii_eval``) scores short messages; long texts take other
paths (2,000-character chunks, a NER budget per text, JSON tool results). This packs the
labelled messages of ``evals/data`` into answers of up to 8,000 characters (scored as the output
layer scans them: NER on, with its budget) and into JSON tool results of up to 32,000 characters
(the shipped tool-result layer's parameters: NER off, the messages as string values), and
compares the share of labelled values masked there with the share masked when each message is
scanned alone with the same parameters.

``python -m evals.pii_long`` prints one line per form (and its values per language) and the
values masked alone but not once packed (neighbouring messages change what NER and the cues see, so a few may differ).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from evals.pii_eval import Record, load_records
from nodes.guards.pii import detect

__all__ = ["main", "masked", "pack"]


def pack(records: Sequence[Record], limit: int, *, as_json: bool) -> list[tuple[str, list[tuple[int, int]]]]:
    """Return texts of at most ``limit`` characters holding the records, with their gold spans' offsets."""
    out: list[tuple[str, list[tuple[int, int]]]] = []
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 2 if as_json else 0  # '{"notes": [' and ']}' are added around JSON parts
    prefix = '{"notes": ['

    def flush() -> None:
        if not parts:
            return
        text = prefix + ", ".join(parts) + "]}" if as_json else "\n\n".join(parts)
        out.append((text, list(spans)))
        parts.clear()
        spans.clear()

    for record in records:
        piece = json.dumps(record.text, ensure_ascii=False) if as_json else record.text
        sep = 2
        base = len(prefix) + sum(len(p) + sep for p in parts) if as_json else sum(len(p) + sep for p in parts)
        if base + len(piece) + length > limit and parts:
            flush()
            base = len(prefix) if as_json else 0
        for gold in record.spans:
            if as_json:  # the value's offset inside its JSON string: escapes shift it
                start = base + len(json.dumps(record.text[: gold.start], ensure_ascii=False)) - 1
                end = start + len(json.dumps(record.text[gold.start : gold.end], ensure_ascii=False)) - 2
            else:
                start, end = base + gold.start, base + gold.end
            spans.append((start, end))
        parts.append(piece)
    flush()
    return out


def masked(texts: Sequence[tuple[str, list[tuple[int, int]]]], **params: Any) -> list[bool]:
    """Return, per labelled value of ``texts`` in order, whether a detected span overlaps it."""
    out: list[bool] = []
    for text, golds in texts:
        spans = detect(text, **params)
        out.extend(any(s.start < end and start < s.end for s in spans) for start, end in golds)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Print the recall of each packed form next to the messages alone."""
    parser = argparse.ArgumentParser(prog="python -m evals.pii_long", description=__doc__.split("\n")[0])
    parser.add_argument("--answer-chars", type=int, default=8000, help="longest packed answer (default 8000)")
    parser.add_argument("--tool-chars", type=int, default=32000, help="longest packed tool result (default 32000)")
    args = parser.parse_args(argv)
    records = [r for r in load_records() if r.spans]
    forms = {
        "answer (output layer: NER on)": (args.answer_chars, False, {"ner": "auto"}),
        "tool result JSON (NER off)": (args.tool_chars, True, {"ner": "never"}),
    }
    values = [(r, g) for r in records for g in r.spans]
    for name, (limit, as_json, params) in forms.items():
        alone = masked(pack(records, 1, as_json=as_json), **params)
        packed_texts = pack(records, limit, as_json=as_json)
        packed = masked(packed_texts, **params)
        total = len(values)
        print(f"{name:32s} {len(packed_texts):3d} texts of <= {limit} chars: {sum(packed)}/{total} values masked "
              f"({100 * sum(packed) / total:.1f}%); each message alone: {sum(alone)}/{total} "
              f"({100 * sum(alone) / total:.1f}%)")
        # Per language: a long text's language is identified per chunk, so a packed answer
        # mixes languages that the messages alone did not.
        by_lang: dict[str, list[int]] = {}
        for (record, _), was, now in zip(values, alone, packed, strict=True):
            row = by_lang.setdefault(record.lang, [0, 0, 0])
            row[0] += 1
            row[1] += int(now)
            row[2] += int(was)
        print("    " + "; ".join(
            f"{lang}: {n_packed}/{n} packed, {n_alone}/{n} alone"
            for lang, (n, n_packed, n_alone) in sorted(by_lang.items())
        ))
        for (record, gold), was, now in zip(values, alone, packed, strict=True):
            if was and not now:
                value = record.text[gold.start : gold.end]
                print(f"    masked alone, not packed: [{gold.label}] {value!r} ({record.id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
