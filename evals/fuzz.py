"""Adversarial shapes through every guard layer: the slowest input per layer, up to the limits.

``python -m evals.fuzz`` (or ``airlock bench fuzz``) builds the shipped policy's input, output
and tool-result pipelines and runs every layer on texts shaped the way slow inputs are: runs of
blanks, tabs or punctuation, nested quotes and brackets, long tokens without spaces, mixed
scripts, a PII cue followed by padding. Each shape is tried at lengths up to the pipeline's
limit (the input's ``max_chars``, the output and tool-result caps). It prints the number of
inputs tried, the slowest input of each layer and its time, and exits 1 when any layer took
longer than ``--max-ms`` on any input. ``--clock cpu`` times each layer by its thread's CPU time
instead of elapsed time: on a machine shared with other work, that is what the layer costs.

The test suite runs the same shapes through hypothesis (``tests/test_guard_fuzz.py``) but
asserts a deterministic measure of work instead of a time: machines differ, counts do not.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["SHAPES", "FuzzResult", "main", "run_fuzz", "shape_text"]

#: Shape name to a function of (unit string chooser, length) that builds the text.
SHAPES: dict[str, Callable[[random.Random, int], str]] = {
    "spaces": lambda r, n: "add bags to ABC123" + " " * n + "born",
    "tabs": lambda r, n: "date of birth" + "\t" * n + "1990",
    "blank mix": lambda r, n: "dob: " + "".join(r.choice(" \t\u00a0\u3000") for _ in range(n)) + "x",
    "punctuation": lambda r, n: "!" * n,
    "mixed punctuation": lambda r, n: "".join(r.choice("!?.,;:-_*#'\"()[]{}<>/\\|@&%$^~`+=") for _ in range(n)),
    "nested quotes": lambda r, n: "\"'" * (n // 2) + "x" + "'\"" * (n // 2),
    "nested brackets": lambda r, n: "[" * (n // 2) + "a" + "](" * (n // 4),
    "long token": lambda r, n: "".join(r.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789") for _ in range(n)),
    "long token with dots": lambda r, n: "a." * (n // 2),
    "email-ish": lambda r, n: "a@" * (n // 2),
    "url-ish": lambda r, n: "http://" + "a." * (n // 2),
    "markdown links": lambda r, n: "[x](http://a" * (n // 12),
    "html-ish": lambda r, n: "<a href=" * (n // 8),
    "mixed scripts": lambda r, n: "".join(r.choice("aЖبב中😀é ") for _ in range(n)),
    "capitalised words": lambda r, n: " ".join("Abc" for _ in range(n // 4)),
    "digits and dashes": lambda r, n: "1-" * (n // 2),
    "json nesting": lambda r, n: '{"a":' * (n // 5) + "1" + "}" * (n // 5),
}


def shape_text(shape: str, length: int, seed: int = 0) -> str:
    """Return the ``shape`` text of about ``length`` characters (cut to exactly ``length``)."""
    return SHAPES[shape](random.Random(seed), max(length, 1))[:length]


@dataclass(frozen=True)
class FuzzResult:
    """The outcome of a fuzz run.

    Attributes:
        tried: Texts run through each layer.
        slowest: Per ``pipeline/layer``: (milliseconds, shape, length) of its slowest text.
        times: Per ``pipeline/layer``: the milliseconds of every text, in the order tried.
    """

    tried: int
    slowest: dict[str, tuple[float, str, int]]
    times: dict[str, list[float]] = field(default_factory=dict)

    def percentile(self, layer: str, q: float) -> float:
        """Return the ``q`` quantile (0..1, nearest rank) of ``layer``'s times."""
        ordered = sorted(self.times.get(layer) or [0.0])
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    def worst(self) -> tuple[str, float, str, int]:
        """Return (layer, ms, shape, length) of the slowest text of all."""
        layer, (ms, shape, length) = max(self.slowest.items(), key=lambda kv: kv[1][0])
        return layer, ms, shape, length


_CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}


def _pipelines() -> dict[str, object]:
    from graph.policy import load_policy
    from graph.runtime import build_pipeline
    from tools.airline import POLICY_PATH

    policy = load_policy(POLICY_PATH)
    guards = policy.guards
    # The safety layer calls a remote endpoint (its own timeout); it is not a scanner. Input
    # layers never see more than the prefilter accepts.
    prefilter = next((layer.params.get("max_chars") for layer in guards.input if layer.layer == "prefilter"), None)
    return {
        "input": build_pipeline([layer for layer in guards.input if layer.layer != "safety"],
                                max_chars=min(guards.max_chars.input, int(prefilter or guards.max_chars.input))),
        "output": build_pipeline(guards.output, max_chars=guards.max_chars.output),
        "tool_result": build_pipeline(guards.tool_result, max_chars=guards.max_chars.tool_result),
    }


def _forget_analyses() -> None:
    """Empty the PII layer's per-process analysis cache (a repeat of a text would be served from it)."""
    pii = sys.modules.get("nodes.guards.pii")
    if pii is not None:
        pii.clear_analysis_cache()


def run_fuzz(
    lengths: Sequence[int] | None = None, *, seeds: int = 2, repeat: int = 1, clock: str = "wall"
) -> FuzzResult:
    """Run every shape at every length through every layer of the shipped pipelines.

    Args:
        lengths: Text lengths (each capped at the pipeline's limit).
        seeds: Random variants per shape and length.
        repeat: Runs per text; its time is the fastest (the others waited for the CPU).
        clock: ``"wall"`` (elapsed time) or ``"cpu"`` (the thread's CPU time: what the layer
            costs on an idle core, the same on a machine busy with other work).
    """
    if clock not in _CLOCKS:
        raise ValueError(f"clock must be one of {sorted(_CLOCKS)}")
    now = _CLOCKS[clock]
    from nodes.guards.base import GuardContext
    from nodes.guards.vault import InMemoryVault

    pipelines = _pipelines()
    slowest: dict[str, tuple[float, str, int]] = {}
    times: dict[str, list[float]] = {}
    tried = 0
    for kind, pipeline in pipelines.items():
        limit = pipeline.max_chars  # type: ignore[attr-defined]
        sizes = sorted({min(n, limit) for n in (lengths or (64, 512, 2048, limit // 2, limit))})
        for name, guard in zip((s.name for s in pipeline.specs), pipeline.guards, strict=True):  # type: ignore[attr-defined]
            guard.check("warm up", GuardContext(direction=kind, vault=InMemoryVault()))  # type: ignore[arg-type]
            for shape in SHAPES:
                for size in sizes:
                    for seed in range(seeds):
                        text = shape_text(shape, size, seed)
                        ms = float("inf")
                        for _ in range(max(1, repeat)):
                            ctx = GuardContext(direction=kind, vault=InMemoryVault())  # type: ignore[arg-type]
                            _forget_analyses()  # each run analyses the text, as a new message would
                            t0 = now()
                            try:
                                guard.check(text, ctx)
                            except Exception:  # noqa: BLE001 - a raising layer is the pipeline's fail-safe
                                pass
                            ms = min(ms, (now() - t0) * 1000.0)
                        tried += 1
                        key = f"{kind}/{name}"
                        times.setdefault(key, []).append(ms)
                        if ms > slowest.get(key, (-1.0, "", 0))[0]:
                            slowest[key] = (ms, shape, size)
    return FuzzResult(tried=tried, slowest=slowest, times=times)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fuzz target and print its statistics."""
    parser = argparse.ArgumentParser(prog="python -m evals.fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--max-ms", type=float, default=100.0,
                        help="fail (exit 1) when a layer takes longer on any input (default 100)")
    parser.add_argument("--lengths", type=int, nargs="*",
                        help="text lengths to try (default 64 512 2048 and each pipeline's limit and half)")
    parser.add_argument("--seeds", type=int, default=2, help="random variants per shape and length (default 2)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per text, the fastest counts (default 3: a shared machine adds waits)")
    parser.add_argument("--clock", choices=sorted(_CLOCKS), default="wall",
                        help="wall: elapsed time (default); cpu: the thread's CPU time, what a layer costs on an "
                             "idle core (use it on a machine busy with other work)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    result = run_fuzz(args.lengths, seeds=args.seeds, repeat=args.repeat, clock=args.clock)
    layer, ms, shape, length = result.worst()
    over = {k: v for k, v in result.slowest.items() if v[0] > args.max_ms}
    if args.json:
        print(json.dumps({"tried": result.tried, "max_ms": args.max_ms, "clock": args.clock,
                          "slowest": {"layer": layer, "ms": round(ms, 2), "shape": shape, "chars": length},
                          "per_layer": {k: {"ms": round(v[0], 2), "shape": v[1], "chars": v[2],
                                            "p50_ms": round(result.percentile(k, 0.5), 2),
                                            "p95_ms": round(result.percentile(k, 0.95), 2)}
                                        for k, v in sorted(result.slowest.items())},
                          "over_budget": sorted(over)}))
    else:
        print(f"inputs tried: {result.tried} (layer x text), {args.clock} clock")
        for key, (lms, lshape, llen) in sorted(result.slowest.items()):
            print(f"  {key:34s} p50 {result.percentile(key, 0.5):7.2f}  p95 {result.percentile(key, 0.95):7.2f}"
                  f"  slowest {lms:8.2f} ms  ({lshape}, {llen} chars)")
        print(f"slowest overall: {layer} {ms:.2f} ms on '{shape}' of {length} chars")
        if over:
            print(f"over {args.max_ms:.0f} ms: {', '.join(sorted(over))}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
