"""``airlock scan``: run a guard pipeline over lines of input, one JSON decision per line.

Each input line is either plain text or a JSON object with a ``"text"`` field (detected per
line; an ``"id"`` field is echoed back). Each output line is a JSON object with ``action``,
``layer``, ``reason``, ``scores``, ``latency_ms`` and the per-layer decisions under
``layers``. The input text itself is not echoed (it may hold PII); ``--text`` adds the
final, masked/normalised text.

The pipeline is the one the app runs: the policy in ``--policy``, else ``$AIRLOCK_POLICY``,
else the shipped one, with ``${VAR}`` references expanded as at start-up. ``action`` is what
the app does with the message: the pipeline's uncertain band (``pipeline_action: escalate``)
is resolved by the policy's ``guards.uncertain_action`` (``resolution``): ``proceed``/``allow``
answer it (``input_risk: uncertain``), ``block`` refuses it, ``review`` holds it for a human
(``action: escalate``). ``--layers`` runs bare layers and resolves nothing.

Exit status: 0 whatever the decisions, 2 on a usage error (bad mode, missing file),
1 when the pipeline cannot be built (unknown layer, missing classifier artefact).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from graph.errors import AirlockError

__all__ = ["build_scan_pipeline", "main", "parse_line", "scan_main", "scan_policy_path", "scan_setup"]

MODES = ("input", "output", "tool-result")
_DIRECTIONS = {"input": "input", "output": "output", "tool-result": "tool_result"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airlock scan",
        description=(
            "Run the guard pipeline over lines of text (plain, or JSONL with a 'text' field) "
            "and print one JSON decision per line."
        ),
    )
    parser.add_argument(
        "file", nargs="?", default="-", metavar="FILE",
        help="input file, one message per line; '-' (default) reads standard input",
    )
    parser.add_argument(
        "--mode", default="input", choices=MODES,
        help="which pipeline: user input (default), model output, or tool results",
    )
    parser.add_argument(
        "--policy", metavar="PATH",
        help="policy YAML whose 'guards' section defines the pipelines (default: $AIRLOCK_POLICY, "
        "else the shipped policy: what the app runs)",
    )
    parser.add_argument(
        "--layers", metavar="NAMES",
        help="comma-separated registered layer names with default parameters, e.g. "
        "'prefilter,pii' (overrides --policy)",
    )
    parser.add_argument(
        "--text", action="store_true",
        help="also print the final (normalised / PII-masked) text of each line",
    )
    return parser


def parse_line(line: str) -> tuple[str, Any]:
    """Return ``(text, id)`` for one input line (JSON object with ``text``, or plain text)."""
    stripped = line.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            obj = json.loads(stripped)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("text"), str):
            return obj["text"], obj.get("id")
    return line, None


def scan_policy_path(policy: str | None) -> Path:
    """Return the policy ``scan`` runs: ``policy``, else ``$AIRLOCK_POLICY``, else the app's default."""
    if policy:
        return Path(policy)
    if os.environ.get("AIRLOCK_POLICY"):
        return Path(os.environ["AIRLOCK_POLICY"])
    from graph.plugins import load_plugin

    return load_plugin().policy_path


def build_scan_pipeline(mode: str, *, policy: str | None = None, layers: str | None = None) -> Any:
    """Build the pipeline ``scan`` uses for ``mode`` (``input``/``output``/``tool-result``)."""
    return scan_setup(mode, policy=policy, layers=layers)[0]


def scan_setup(mode: str, *, policy: str | None = None, layers: str | None = None) -> tuple[Any, str | None]:
    """Return the pipeline ``scan`` runs for ``mode`` and how its uncertain band is resolved.

    ``layers`` runs the named layers with default parameters and resolves nothing (None);
    otherwise the policy is read once: its pipeline is built exactly as the app builds it
    (:func:`graph.runtime.build_pipeline`), and for ``input`` its ``guards.uncertain_action``
    is returned.
    """
    from nodes.guards.pipeline import GuardPipeline, LayerSpec

    if layers:
        specs = [LayerSpec(name=n.strip()) for n in layers.split(",") if n.strip()]
        if mode == "input":
            specs = [
                LayerSpec(name=s.name, only_if_escalated=True) if s.name == "safety" else s
                for s in specs
            ]
        return GuardPipeline(layers=specs), None
    from graph.policy import load_policy
    from graph.runtime import build_pipeline

    guards = load_policy(scan_policy_path(policy)).guards
    configs = {"input": guards.input, "output": guards.output, "tool-result": guards.tool_result}[mode]
    if not configs:
        print(f"airlock scan: the policy lists no {mode} layers; every line passes", file=sys.stderr)
    return build_pipeline(list(configs)), str(guards.uncertain_action) if mode == "input" else None


def _lines(stream: TextIO) -> Iterator[str]:
    for raw in stream:
        yield raw[:-1] if raw.endswith("\n") else raw


def _open(path: str) -> TextIO:
    if path == "-":
        # Undecodable bytes become lone surrogates, which the prefilter blocks as such.
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape")
    return open(path, encoding="utf-8", errors="surrogateescape")


def scan_main(argv: Sequence[str] | None = None) -> int:
    """Run ``airlock scan``; return the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else 2
    if args.file != "-" and not Path(args.file).is_file():
        print(f"airlock scan: no such file: {args.file}", file=sys.stderr)
        return 2
    if not args.layers and not scan_policy_path(args.policy).is_file():
        print(f"airlock scan: no such policy file: {scan_policy_path(args.policy)}", file=sys.stderr)
        return 2
    try:
        pipeline, uncertain = scan_setup(args.mode, policy=args.policy, layers=args.layers)
    except AirlockError as exc:  # reported, not raised: this is a CLI (a bug keeps its traceback)
        print(f"airlock scan: cannot build the {args.mode} pipeline: {exc}", file=sys.stderr)
        return 1

    from nodes.guards.base import Action, GuardContext
    from nodes.guards.vault import InMemoryVault
    from nodes.guards.warmup import warm_pipeline
    from nodes.input_guard import resolve_uncertain

    # Models load now, so the first line's latency is the pipeline's, not the load's.
    warm = warm_pipeline(pipeline, direction=_DIRECTIONS[args.mode])  # type: ignore[arg-type]
    for layer, error in warm.errors.items():
        print(f"airlock scan: layer {layer} failed to warm up ({error})", file=sys.stderr)

    ctx = GuardContext(
        direction=_DIRECTIONS[args.mode],  # type: ignore[arg-type]
        thread_id="scan",
        vault=InMemoryVault(thread_id="scan"),
    )
    out = sys.stdout
    with _open(args.file) as stream:
        for number, line in enumerate(_lines(stream), start=1):
            text, line_id = parse_line(line)
            result = pipeline.run(text, ctx)
            audit = result.to_audit()
            record: dict[str, Any] = {"line": number}
            if line_id is not None:
                record["id"] = line_id
            action = audit["action"]
            resolved: dict[str, Any] = {}
            if uncertain is not None:
                final, risk = resolve_uncertain(result.action, uncertain)
                action = final.value
                resolved = {"pipeline_action": audit["action"], "input_risk": risk}
                if result.action is Action.ESCALATE:
                    resolved["resolution"] = uncertain
            record.update(
                action=action,
                **resolved,
                layer=audit["layer"],
                reason=audit["reason"],
                scores=audit["scores"],
                latency_ms=audit["latency_ms"],
                layers=audit["layers"],
            )
            if args.text:
                record["text"] = result.text
            out.write(json.dumps(record) + "\n")
            out.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m ui.scan``."""
    return scan_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
