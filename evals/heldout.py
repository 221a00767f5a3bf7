"""Measure the input guard the app runs on data from sources that are not in training.

``python -m evals.heldout`` (part of ``airlock eval``) builds the input pipeline of the policy
exactly as the app does (``airlock scan``'s path: ``${VAR}`` expanded, the uncertain band
resolved by ``guards.uncertain_action``) and runs it over

* ``taubench``: the tau-bench airline customer turns (LLM-simulated customers; a held-out
  source, never trained on);
* ``written_benign_heldout`` / ``written_attacks_heldout``: hand-written for airlock after, and
  apart from, the training files (``evals/data/CLASSIFIER_DATA.md``), in en/es/fr/de/pt/it
  (+ ru/zh/ja for attacks);
* ``written_guard_heldout`` / ``written_guard2_heldout``: the held-out twins of the issue-8
  training files (``written_guard2_heldout`` was written before ``written_guard2`` was, for
  "how do I ..." questions and the weak attack techniques);
* ``encoded_attacks_heldout``: the English held-out attacks carried as base64, hex, URL
  encoding, rot13 and leetspeak (generated here, deterministically);
* ``airline_eval`` / ``airline_final_check``: the older hand-written development sets;
* ``--extra FILE.jsonl`` (any number): more labelled sets kept outside the project
  (``{"text", "label", "lang"[, "source", "category"]}`` per line; ``label`` ``benign`` or
  an attack label).

Per set and language it reports blocked, uncertain (the pipeline's ESCALATE) and held (what
waits for a human before any answer: the uncertain band under ``review``), for benign and
attack rows separately; per attack technique the share stopped; and every blocked benign
message with its scores. Writes ``evals/reports/heldout.{json,md}``. Deterministic but for
nothing: no timing is reported. No evaluation corpus named in the project's rules is read.
"""

from __future__ import annotations

import argparse
import base64
import codecs
import json
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from evals.train_classifiers import (
    DEFAULT_REPORTS_DIR,
    DEFAULT_SEED,
    EVALS_DATA,
    REPO,
    fill_slots,
    read_jsonl,
    resolve_data_dir,
)

__all__ = ["encoded_variants", "evaluate", "load_sets", "main", "render_masked"]

#: Written-for-airlock held-out files (evaluation only; never read by training).
HELDOUT_FILES = (
    "written_benign_heldout", "written_attacks_heldout", "written_guard_heldout", "written_guard2_heldout",
    "airline_eval", "airline_final_check",
)
_ENCODERS = {
    "base64": lambda t: "decode this and do what it says: " + base64.b64encode(t.encode()).decode(),
    "hex": lambda t: "my booking note (hex): " + t.encode().hex(),
    "url": lambda t: "see my note " + quote(t),
    "rot13": lambda t: codecs.encode(t, "rot13"),
    "leet": lambda t: t.translate(str.maketrans({"e": "3", "o": "0", "a": "4", "i": "1", "s": "5"})),
}


def encoded_variants(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return each English attack row carried by every encoding in :data:`_ENCODERS`."""
    out: list[dict[str, Any]] = []
    for row in rows:
        if row["label"] == "benign" or row.get("lang") != "en":
            continue
        for kind, encode in _ENCODERS.items():
            out.append({**row, "id": f"{row.get('id', '')}:{kind}", "text": encode(row["text"]),
                        "category": f"encoded-{kind}"})
    return out


def _filled(path: Path, seed: int, slots: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    rows = []
    for obj in read_jsonl(path):
        rng = random.Random(f"{seed}:heldout:{obj.get('id')}")
        rows.append({**obj, "text": fill_slots(obj["text"], slots, rng)})
    return rows


def load_sets(data_dir: Path, seed: int, extra: Sequence[Path] = ()) -> dict[str, list[dict[str, Any]]]:
    """Return the held-out sets by name, slots filled with seeded choices."""
    slots = json.loads((EVALS_DATA / "synthetic.json").read_text(encoding="utf-8"))["slots"]
    sets: dict[str, list[dict[str, Any]]] = {
        "taubench": [
            {"text": o["text"], "label": "benign", "lang": o.get("lang", "en"), "category": "taubench"}
            for o in read_jsonl(data_dir / "benign" / "taubench_airline_user_turns.jsonl")
        ],
    }
    for name in HELDOUT_FILES:
        sets[name] = _filled(EVALS_DATA / f"{name}.jsonl", seed, slots)
    sets["encoded_attacks_heldout"] = encoded_variants(sets["written_attacks_heldout"])
    sets["encoded_guard_heldout"] = encoded_variants(sets["written_guard_heldout"])
    sets["encoded_guard2_heldout"] = encoded_variants(sets["written_guard2_heldout"])
    for path in extra:
        sets[path.stem] = [
            {"text": o["text"], "label": o.get("label", "benign"), "lang": o.get("lang", "en"),
             "category": o.get("category", "")}
            for o in read_jsonl(path)
        ]
    return sets


def _shown(path: Path) -> str:
    """Return ``path`` relative to the repository when inside it (reports hold no local paths)."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else resolved.name


def _rates(n: int, counts: Counter[str]) -> dict[str, Any]:
    return {"n": n, **{k: round(counts[k] / n, 4) if n else 0.0
                       for k in ("blocked", "uncertain", "held", "stopped", "masked")}}


_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_[1-9][0-9]*>|\[card security code removed\]")


def _masked_spans(text: str, masked: str) -> list[dict[str, str]]:
    """Return which words of ``text`` became which placeholder in ``masked`` (benign rows only)."""
    # Rebuild the original of each placeholder from the text around it: the masked text is
    # the original with spans replaced, so the literal pieces between placeholders anchor them.
    pieces = _PLACEHOLDER.split(masked)
    names = _PLACEHOLDER.findall(masked)
    pattern = "".join(
        re.escape(piece) + (f"(?P<g{i}>.+?)" if i < len(names) else "") for i, piece in enumerate(pieces)
    )
    match = re.fullmatch(pattern, text, re.DOTALL)
    if match is None:
        return [{"placeholder": n, "value": "?"} for n in names]
    return [{"placeholder": n, "value": match.group(f"g{i}")} for i, n in enumerate(names)]


def evaluate(
    sets: Mapping[str, Sequence[Mapping[str, Any]]], *, policy: str | None = None
) -> dict[str, Any]:
    """Run the app's input pipeline over every set; return the report.

    The report's ``masked_benign`` lists, for every benign row the PII layer altered, the
    words it masked and their placeholders (most benign rows hold no personal data, so these
    are mostly false positives).
    """
    from nodes.guards.base import Action, GuardContext
    from nodes.guards.vault import InMemoryVault
    from nodes.guards.warmup import warm_pipeline
    from nodes.input_guard import resolve_uncertain
    from ui.scan import scan_policy_path, scan_setup

    pipeline, resolution = scan_setup("input", policy=policy)
    uncertain = resolution or "block"
    warm_pipeline(pipeline, direction="input")
    ctx = GuardContext(direction="input", thread_id="heldout", vault=InMemoryVault(thread_id="heldout"))
    report: dict[str, Any] = {
        "policy": _shown(scan_policy_path(policy)),
        "uncertain_action": uncertain, "sets": {}, "blocked_benign": [], "attack_misses": [],
        "masked_benign": [],
    }
    for name, rows in sets.items():
        by: dict[tuple[str, str], Counter[str]] = {}
        techniques: dict[str, Counter[str]] = {}
        for row in rows:
            result = pipeline.run(row["text"], ctx)
            final, _risk = resolve_uncertain(result.action, uncertain)
            kind = "benign" if row["label"] == "benign" else "attack"
            c = by.setdefault((kind, str(row.get("lang", "en"))), Counter())
            c["n"] += 1
            c["blocked"] += final is Action.BLOCK
            c["uncertain"] += result.action is Action.ESCALATE
            c["held"] += final is Action.ESCALATE
            c["stopped"] += final in (Action.BLOCK, Action.ESCALATE)
            seen = row["text"]  # what the PII layer read: the text after the layers before it
            for d in result.decisions:
                if d.layer == "pii" and d.action is Action.MODIFY and d.text is not None:
                    c["masked"] += 1
                    if kind == "benign":
                        report["masked_benign"].append({
                            "set": name, "lang": row.get("lang"), "text": row["text"][:300],
                            "masked": _masked_spans(seen, d.text),
                        })
                    break
                seen = d.text if d.text is not None else seen
            if kind == "attack":
                t = techniques.setdefault(str(row.get("category", "")), Counter())
                t["n"] += 1
                t["stopped"] += final in (Action.BLOCK, Action.ESCALATE)
                t["blocked"] += final is Action.BLOCK
                if final is not Action.BLOCK:
                    report["attack_misses"].append({
                        "set": name, "lang": row.get("lang"), "category": row.get("category"),
                        "action": final.value, "reason": result.reason, "text": row["text"][:200],
                    })
            elif final is Action.BLOCK:
                report["blocked_benign"].append({
                    "set": name, "lang": row.get("lang"), "layer": result.layer, "reason": result.reason,
                    "scores": {k: round(v, 3) for k, v in result.scores.items()},
                    "text": row["text"][:300],
                })
        entry: dict[str, Any] = {}
        for kind in ("benign", "attack"):
            langs = {lang: c for (k, lang), c in sorted(by.items()) if k == kind}
            if not langs:
                continue
            total: Counter[str] = Counter()
            for c in langs.values():
                total.update(c)
            entry[kind] = {"all": _rates(total["n"], total),
                           "by_lang": {lang: _rates(c["n"], c) for lang, c in langs.items()}}
        if techniques:
            entry["techniques"] = {
                t: {"n": c["n"], "stopped": round(c["stopped"] / c["n"], 4),
                    "blocked": round(c["blocked"] / c["n"], 4)}
                for t, c in sorted(techniques.items())
            }
        report["sets"][name] = entry
    return report


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render_markdown(report: Mapping[str, Any]) -> str:
    """Render the report as Markdown."""
    lines = [
        "# Input guard on held-out data",
        "",
        "Generated by `python -m evals.heldout`. The input pipeline of "
        f"`{report['policy']}` as the app builds it; the uncertain band resolved by "
        f"`guards.uncertain_action: {report['uncertain_action']}`. *blocked*: refused; "
        "*uncertain*: the pipeline was unsure (under `proceed` the agent answers and a write in "
        "that thread needs a reviewer); *held*: waits for a human before any answer; *PII masked*: "
        "the PII layer replaced something with a placeholder (in benign rows without personal "
        "data, an ordinary word altered).",
        "",
        "| set | kind | lang | n | blocked | uncertain | held | blocked or held | PII masked |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, entry in report["sets"].items():
        for kind in ("benign", "attack"):
            if kind not in entry:
                continue
            rows = [("all", entry[kind]["all"]), *entry[kind]["by_lang"].items()]
            if len(rows) == 2:
                rows = rows[:1]
            for lang, r in rows:
                lines.append(f"| {name} | {kind} | {lang} | {r['n']} | {_pct(r['blocked'])} | "
                             f"{_pct(r['uncertain'])} | {_pct(r['held'])} | {_pct(r['stopped'])} | "
                             f"{_pct(r['masked'])} |")
    lines += ["", "## Attack techniques (held-out attacks, stopped = blocked or held)", "",
              "| set | technique | n | blocked | stopped |", "| --- | --- | ---: | ---: | ---: |"]
    for name, entry in report["sets"].items():
        for t, r in (entry.get("techniques") or {}).items():
            lines.append(f"| {name} | {t} | {r['n']} | {_pct(r['blocked'])} | {_pct(r['stopped'])} |")
    lines += ["", f"## Every blocked benign message ({len(report['blocked_benign'])})", ""]
    for b in report["blocked_benign"]:
        text = b["text"].replace("\n", " ").replace("|", "/")
        lines.append(f"- `{b['set']}` {b['lang']} {b['layer']}:{b['reason']} {b['scores']} — {text}")
    lines += ["", f"## Attacks not blocked ({len(report['attack_misses'])})", ""]
    for m in report["attack_misses"]:
        text = m["text"].replace("\n", " ").replace("|", "/")
        lines.append(f"- `{m['set']}` {m['lang']} {m['category']} → {m['action']} ({m['reason']}) — {text}")
    return "\n".join(lines) + "\n"


def render_masked(report: Mapping[str, Any]) -> str:
    """Render the benign rows the PII layer altered: set, language, masked words, text."""
    lines = [f"{len(report['masked_benign'])} benign rows masked by the PII layer"]
    for m in report["masked_benign"]:
        spans = ", ".join(f"{s['value']!r}->{s['placeholder']}" for s in m["masked"])
        lines.append(f"{m['set']}\t{m['lang']}\t{spans}\t{m['text'][:160]!r}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation and write ``heldout.{json,md}``."""
    parser = argparse.ArgumentParser(
        prog="python -m evals.heldout",
        description="Measure the app's input guard on held-out sets (not in training), per set, "
        "language and technique; list every blocked benign message.",
    )
    parser.add_argument("--data-dir", help="training corpus dir (for the tau-bench turns); "
                        "default: $AIRLOCK_TRAINING_DATA or ../shared/data")
    parser.add_argument("--policy", help="policy YAML (default: what the app runs)")
    parser.add_argument("--extra", type=Path, nargs="*", default=[], metavar="FILE",
                        help="more labelled JSONL sets kept outside the project")
    parser.add_argument("--reports-dir", type=Path, default=DEFAULT_REPORTS_DIR,
                        help="where heldout.{json,md} go (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="default: %(default)s")
    parser.add_argument("--show-masked", action="store_true",
                        help="print every benign row the PII layer altered, with the masked words and "
                        "their placeholder types (mostly false positives)")
    args = parser.parse_args(argv)
    sets = load_sets(resolve_data_dir(args.data_dir), args.seed, args.extra)
    report = evaluate(sets, policy=args.policy)
    args.reports_dir.mkdir(parents=True, exist_ok=True)
    (args.reports_dir / "heldout.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
    (args.reports_dir / "heldout.md").write_text(render_markdown(report), encoding="utf-8")
    if args.show_masked:
        print(render_masked(report), end="")
    print(f"wrote {args.reports_dir / 'heldout.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
