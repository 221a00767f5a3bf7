"""How many messages a human must see: ``uncertain_action: review`` against ``proceed``.

``python -m evals.uncertain_band`` runs the airline policy's input layers 1-3 (prefilter,
classifiers, PII; no layer-4 endpoint, so the uncertain band stays ESCALATE, as in
``evals/quality.py``) over

* benign: the training corpus's held-out test split (benign rows), the tau-bench airline
  customer turns, and the benign rows of the hand-written airline sets in ``evals/data``;
* attacks: the test split's injection/jailbreak rows and the non-benign hand-written rows.

For each set it counts, per mode:

* ``review``: every uncertain message waits for a human before the customer gets any answer
  (held = reviews = uncertain messages);
* ``proceed``: nobody waits for an answer (held = 0); a reviewer sees a case only when a
  thread with a risky message asks for a write. Expected reviews = uncertain messages x the
  share of airline conversations that write (from the tau2 airline tasks: tasks whose expected
  actions include a write tool); the upper bound (every such thread writes) is given too.
  For attacks, ``reach the agent unreviewed`` counts what ``proceed`` lets talk to the agent
  (its writes still go to a reviewer; reads are limited to the customer's own data by the
  pre-tool rules).

It also checks the layer-1 change of issue 8: benign messages blocked by the prefilter with
the six old languages and with every shipped list. Writes ``evals/reports/uncertain_band.{json,md}``.
No evaluation corpus named in the project's rules is read.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evals.quality import AIRLINE_SETS, DEFAULT_REPORTS_DIR, REPO, build_input_pipeline, test_split
from evals.train_classifiers import DEFAULT_SEED, EVALS_DATA, read_jsonl, resolve_data_dir
from nodes.guards.base import Action, GuardContext
from nodes.guards.prefilter import PreFilter
from tools.airline.schemas import AIRLINE_TOOLS

__all__ = ["evaluate", "main", "write_share"]

OLD_LANGUAGES = ("en", "es", "fr", "de", "pt", "it")


def write_share(data_dir: Path) -> tuple[float, int, int]:
    """Return (share, writing tasks, tasks) of the tau2 airline tasks whose expected actions write."""
    path = data_dir / "airline" / "tasks" / "tau2_tasks.json"
    tasks = json.loads(path.read_text(encoding="utf-8"))
    writes = {name for name, spec in AIRLINE_TOOLS.items() if spec.write}
    writing = sum(
        1 for t in tasks
        if any(a.get("name") in writes for a in (t.get("evaluation_criteria") or {}).get("actions") or [])
    )
    return writing / max(1, len(tasks)), writing, len(tasks)


def _action(value: Action) -> str:
    return {Action.BLOCK: "block", Action.ESCALATE: "escalate"}.get(value, "allow")


def evaluate(seed: int = DEFAULT_SEED, data_dir: Path | None = None) -> dict[str, Any]:
    """Return the report (deterministic)."""
    root = resolve_data_dir(str(data_dir) if data_dir else None)
    pipeline = build_input_pipeline()
    ctx = GuardContext()
    attacks, benign, tau = test_split(seed, root)
    hand = [r for name in AIRLINE_SETS for r in read_jsonl(EVALS_DATA / name)]
    sets: dict[str, tuple[str, list[str]]] = {
        "test split, benign": ("benign", [r.text for r in benign]),
        "tau-bench airline turns": ("benign", list(tau)),
        "hand-written airline, benign": ("benign", [r["text"] for r in hand if r["label"] == "benign"]),
        "test split, attacks": ("attack", [r.text for r in attacks]),
        "hand-written airline, attacks": ("attack", [r["text"] for r in hand if r["label"] != "benign"]),
    }
    share, writing, tasks = write_share(root)
    report: dict[str, Any] = {
        "seed": seed, "pipeline": [s.name for s in pipeline.specs],
        "write_share": {"share": round(share, 4), "writing_tasks": writing, "tasks": tasks},
        "sets": {},
    }
    for name, (kind, texts) in sets.items():
        counts = Counter(_action(pipeline.run(t, ctx).action) for t in texts)
        n, unsure = len(texts), counts["escalate"]
        entry: dict[str, Any] = {
            "kind": kind, "n": n, "allow": counts["allow"], "escalate": unsure, "block": counts["block"],
            "review": {"held_before_answer": unsure, "human_cases": unsure},
            "proceed": {"held_before_answer": 0, "human_cases_expected": round(unsure * share, 1),
                        "human_cases_at_most": unsure},
        }
        if kind == "attack":
            entry["review"]["reach_agent_unreviewed"] = 0
            entry["proceed"]["reach_agent_unreviewed"] = unsure
        report["sets"][name] = entry

    all_benign = [t for kind, texts in sets.values() if kind == "benign" for t in texts]
    old, new = PreFilter(languages=OLD_LANGUAGES), PreFilter()
    report["prefilter_benign_blocked"] = {
        "n": len(all_benign),
        "six_languages": sum(old.check(t, ctx).action is Action.BLOCK for t in all_benign),
        "every_shipped_list": sum(new.check(t, ctx).action is Action.BLOCK for t in all_benign),
        "languages": list(new.scanner.languages),
    }
    return report


def render_markdown(report: Mapping[str, Any]) -> str:
    """Render the report as Markdown."""
    w = report["write_share"]
    lines = [
        "# Uncertain band: messages a human must see, `review` against `proceed`",
        "",
        "Generated by `python -m evals.uncertain_band` (deterministic). Input layers 1-3 of the airline "
        f"policy ({' -> '.join(report['pipeline'])}); no layer-4 endpoint, so uncertain stays uncertain.",
        "",
        f"`proceed` expected cases = uncertain x {w['share']:.2f}, the share of tau2 airline tasks whose "
        f"expected actions write ({w['writing_tasks']} of {w['tasks']}); at most = every such thread writes.",
        "",
        "| set | n | blocked | uncertain | review: held before any answer (= human cases) "
        "| proceed: held | proceed: human cases expected (at most) | attacks reaching the agent unreviewed "
        "(review / proceed) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, e in report["sets"].items():
        reach = (f"{e['review']['reach_agent_unreviewed']} / {e['proceed']['reach_agent_unreviewed']}"
                 if e["kind"] == "attack" else "")
        lines.append(
            f"| {name} | {e['n']} | {e['block']} | {e['escalate']} ({e['escalate'] / max(1, e['n']):.1%}) "
            f"| {e['review']['held_before_answer']} | 0 | {e['proceed']['human_cases_expected']} "
            f"({e['proceed']['human_cases_at_most']}) | {reach} |"
        )
    p = report["prefilter_benign_blocked"]
    lines += [
        "",
        "Attacks that `proceed` lets reach the agent can talk and read the customer's own data; any write "
        "in their thread waits for a reviewer (`risky-input-write`), and the thread stays risky for later turns.",
        "",
        "## Layer 1 with every shipped blocklist",
        "",
        f"Benign messages above ({p['n']}) blocked by the prefilter: {p['six_languages']} with the six old "
        f"languages, {p['every_shipped_list']} with every shipped list ({', '.join(p['languages'])}).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation and write the reports."""
    parser = argparse.ArgumentParser(prog="python -m evals.uncertain_band", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="shared data directory (../shared/data)")
    parser.add_argument("--reports-dir", type=Path, default=DEFAULT_REPORTS_DIR)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(list(argv) if argv is not None else None)
    report = evaluate(args.seed, args.data_dir)
    args.reports_dir.mkdir(parents=True, exist_ok=True)
    (args.reports_dir / "uncertain_band.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = render_markdown(report)
    (args.reports_dir / "uncertain_band.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {args.reports_dir.relative_to(REPO) if args.reports_dir.is_relative_to(REPO) else args.reports_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
