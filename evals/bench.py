"""Latency benchmark of the guard layers: ``python -m evals.bench [--n N] [--json PATH]``.

Runs, in one process and after a warm-up, over the fixed corpus
``evals/data/bench_messages.jsonl`` (240 realistic ~30-word airline messages, each with an
agent answer): layer 1 (prefilter), layer 2 (classifiers), layer 3 (PII), layers 1-3 as one
pipeline, and the output guard on the answers. As a baseline it runs Presidio's
``AnalyzerEngine`` with its default recognisers on the same NLP engine (the same spaCy model
object) as our PII layer, once through that engine as configured (NER only around name
candidates) and once with NER on every message (stock Presidio behaviour).

First message after start-up: in fresh processes (the model caches are per process), the
pipeline is built and warmed as ``AirlockServices.start`` does, then one message is timed:
for the policy's L1-3 pipeline and, in the same run, the old linear-only L1-3 pipeline (the
default layer parameters), warmed and cold (built without warm-up: the old behaviour).

Prints a table and writes JSON (default ``evals/reports/bench.json``). A layer whose module
or artefact is missing is reported as missing, not silently skipped.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["TARGETS", "load_corpus", "main", "percentiles", "run_bench"]

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "evals" / "data" / "bench_messages.jsonl"
DEFAULT_JSON = ROOT / "evals" / "reports" / "bench.json"
#: p95 targets in milliseconds.
TARGETS = {
    "L1 prefilter": 0.2,
    "L1-3 pipeline": 10.0,
    "L1-3 policy pipeline": 10.0,
    "output guard": 5.0,
    "first message, policy L1-3 (warm start)": 50.0,
    "first message, linear-only L1-3 (warm start)": 50.0,
}
_WARMUP = 20
#: The pipelines of the first-message rows: (row name, pipeline kind, warm up at start).
FIRST_MESSAGE_ROWS = (
    ("first message, policy L1-3 (warm start)", "policy", True),
    ("first message, linear-only L1-3 (warm start)", "linear", True),
    ("first message, linear-only L1-3 (cold, no warm-up)", "linear", False),
)
_FIRST_MESSAGE_CHILD = r"""
import json, sys, time
from evals.bench import build_l13
from nodes.guards.base import GuardContext
from nodes.guards.vault import InMemoryVault
from nodes.guards.warmup import warm_pipeline

pipeline = build_l13(sys.argv[1])
if sys.argv[2] == "warm":
    warm_pipeline(pipeline)
ctx = GuardContext(direction="input", thread_id="first", vault=InMemoryVault(thread_id="first"))
t0 = time.perf_counter()
pipeline.run(sys.argv[3], ctx)
print(json.dumps({"ms": (time.perf_counter() - t0) * 1000.0}))
"""


def build_l13(kind: str) -> Any:
    """Return layers 1-3: the policy's input layers without the safety resolver, or the linear-only defaults."""
    from nodes.guards.pipeline import GuardPipeline, LayerSpec

    if kind == "linear":
        return GuardPipeline(layers=[LayerSpec(name="prefilter"), LayerSpec(name="classifiers"),
                                     LayerSpec(name="pii")])
    from graph.policy import load_policy
    from graph.runtime import build_pipeline
    from tools.airline import POLICY_PATH

    return build_pipeline([layer for layer in load_policy(POLICY_PATH).guards.input
                           if not layer.only_if_escalated])


def first_message_ms(kind: str, *, warm: bool, text: str, runs: int) -> list[float]:
    """Time the first message of ``runs`` fresh processes (build, optional warm-up, one message)."""
    samples: list[float] = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", _FIRST_MESSAGE_CHILD, kind, "warm" if warm else "cold", text],
            cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
        )
        samples.append(float(json.loads(done.stdout.strip().splitlines()[-1])["ms"]))
    return samples


def load_corpus(path: Path = CORPUS) -> list[dict[str, str]]:
    """Return the benchmark records (``id``, ``text``, ``answer``)."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """Return p50 / p95 / max / mean (ms) of ``samples`` (nearest-rank percentiles)."""
    ordered = sorted(samples)
    n = len(ordered)

    def rank(q: float) -> float:
        return ordered[min(n - 1, max(0, int(round(q * n + 0.5)) - 1))]

    return {
        "p50": round(rank(0.50), 4),
        "p95": round(rank(0.95), 4),
        "max": round(ordered[-1], 4),
        "mean": round(statistics.fmean(ordered), 4),
        "n": n,
    }


def _forget_analyses() -> None:
    """Empty the PII layer's per-process analysis cache (every timed text is then new to it)."""
    pii = sys.modules.get("nodes.guards.pii")
    if pii is not None:
        pii.clear_analysis_cache()


def _time(fn: Callable[[str], Any], texts: Sequence[str], repeat: int) -> list[float]:
    for text in texts[:_WARMUP]:
        fn(text)
    samples: list[float] = []
    for _ in range(repeat):
        for text in texts:
            _forget_analyses()  # a repeat measures the analysis, not the PII layer's cache of it
            t0 = time.perf_counter()
            fn(text)
            samples.append((time.perf_counter() - t0) * 1000.0)
    return samples


def _offline_presidio_baseline() -> tuple[Any, Any]:
    """Return ``(analyzer, engine)``: default recognisers on our PII layer's NLP engine."""
    import tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    from nodes.guards.pii import get_analyzer

    engine = get_analyzer().nlp_engine
    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmail(EmailRecognizer):
        # Same regex and validation as the default one; the public-suffix list comes from
        # tldextract's bundled snapshot instead of a download (no network at run time).
        def validate_result(self, pattern_text: str) -> bool:
            return bool(offline(pattern_text.split("@")[-1]).suffix)

    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=engine)
    registry.remove_recognizer("EmailRecognizer")
    registry.add_recognizer(OfflineEmail())
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])
    return analyzer, engine


def run_bench(*, n: int | None = None, repeat: int = 3, first_runs: int = 3) -> dict[str, Any]:
    """Run every stage and return the report dict."""
    from nodes.guards.base import GuardContext, create_guard
    from nodes.guards.pipeline import GuardPipeline, LayerSpec, default_output_layers
    from nodes.guards.vault import InMemoryVault

    records = load_corpus()
    if n is not None:
        records = records[:n]
    texts = [r["text"] for r in records]
    answers = [r["answer"] for r in records]
    ctx_in = GuardContext(direction="input", thread_id="bench", vault=InMemoryVault())
    ctx_out = GuardContext(direction="output", thread_id="bench", vault=ctx_in.vault)
    stages: dict[str, Any] = {}
    missing: dict[str, str] = {}

    def stage(name: str, build: Callable[[], Callable[[str], Any]], corpus: Sequence[str]) -> None:
        try:
            fn = build()
            stages[name] = percentiles(_time(fn, corpus, repeat))
        except Exception as exc:  # noqa: BLE001 - a missing layer is reported, not fatal
            missing[name] = f"{type(exc).__name__}: {exc}"[:300]

    def layer(name: str, ctx: GuardContext, **params: Any) -> Callable[[], Callable[[str], Any]]:
        def build() -> Callable[[str], Any]:
            guard = create_guard(name, **params)
            return lambda text: guard.check(text, ctx)

        return build

    def pipeline(specs: list[LayerSpec], ctx: GuardContext) -> Callable[[], Callable[[str], Any]]:
        def build() -> Callable[[str], Any]:
            pipe = GuardPipeline(layers=specs)
            return lambda text: pipe.run(text, ctx)

        return build

    stage("L1 prefilter", layer("prefilter", ctx_in), texts)
    stage("L2 classifiers", layer("classifiers", ctx_in), texts)
    # As the shipped policies configure it (``concurrent: true``): should cost what sequential does.
    stage("L2 classifiers (concurrent: true)", layer("classifiers", ctx_in, concurrent=True), texts)
    stage("L3 pii", layer("pii", ctx_in), texts)
    stage(
        "L1-3 pipeline",
        pipeline([LayerSpec(name="prefilter"), LayerSpec(name="classifiers"),
                  LayerSpec(name="pii")], ctx_in),
        texts,
    )

    def policy_l13() -> Callable[[str], Any]:
        pipe = build_l13("policy")
        return lambda text: pipe.run(text, ctx_in)

    stage("L1-3 policy pipeline", policy_l13, texts)
    # The linear-only pipeline above beside the same with the encoder resolving its
    # uncertain band, as the policy runs it (most messages never reach the encoder).
    stage(
        "L1-3 + encoder (uncertain band)",
        pipeline([LayerSpec(name="prefilter"), LayerSpec(name="classifiers"),
                  LayerSpec(name="encoder", params={"confirm_action": "escalate"}, fail_open=True,
                            only_if_escalated=True), LayerSpec(name="pii")], ctx_in),
        texts,
    )
    stage("L2b encoder (every message)", layer("encoder", ctx_in), texts)
    out_specs = [
        LayerSpec(name=s.name, params={"allow": ["example-air.com"]})
        if s.name == "url_allowlist" else s
        for s in default_output_layers()
    ]
    stage("output guard", pipeline(out_specs, ctx_out), answers)

    baseline: dict[str, Any] = {}
    try:
        analyzer, engine = _offline_presidio_baseline()
        baseline["presidio default (same engine)"] = percentiles(
            _time(lambda t: analyzer.analyze(text=t, language="en"), texts, repeat)
        )

        def full_ner(text: str) -> Any:
            artifacts = engine.process(text, "en", ner="always")[0]
            return analyzer.analyze(text=text, language="en", nlp_artifacts=artifacts)

        baseline["presidio default (NER every msg)"] = percentiles(_time(full_ner, texts, repeat))
    except Exception as exc:  # noqa: BLE001
        missing["presidio baseline"] = f"{type(exc).__name__}: {exc}"[:300]

    for name, kind, warm in FIRST_MESSAGE_ROWS if first_runs > 0 else ():
        try:
            stages[name] = percentiles(first_message_ms(kind, warm=warm, text=texts[0], runs=first_runs))
        except Exception as exc:  # noqa: BLE001
            missing[name] = f"{type(exc).__name__}: {exc}"[:300]

    meets = {
        name: (stages[name]["p95"] <= target) if name in stages else None
        for name, target in TARGETS.items()
    }
    return {
        "corpus": str(CORPUS.relative_to(ROOT)),
        "messages": len(texts),
        "repeat": repeat,
        "first_message_runs": first_runs,
        "warmup_per_stage": min(_WARMUP, len(texts)),
        "mean_words": round(statistics.fmean(len(t.split()) for t in texts), 1),
        "stages_ms": stages,
        "baseline_ms": baseline,
        "targets_p95_ms": TARGETS,
        "meets_target": meets,
        "missing": missing,
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
    }


def _table(report: dict[str, Any]) -> str:
    rows = [("stage", "p50 ms", "p95 ms", "max ms", "target p95", "ok")]
    for name, stats in {**report["stages_ms"], **report["baseline_ms"]}.items():
        target = report["targets_p95_ms"].get(name)
        ok = report["meets_target"].get(name)
        rows.append((
            name, f"{stats['p50']:.3f}", f"{stats['p95']:.3f}", f"{stats['max']:.3f}",
            f"<= {target}" if target is not None else "",
            "" if ok is None else ("yes" if ok else "NO"),
        ))
    for name, why in report["missing"].items():
        rows.append((name, "missing", "", "", "", why[:60]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON report."""
    parser = argparse.ArgumentParser(prog="python -m evals.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=None, help="use only the first N messages")
    parser.add_argument("--repeat", type=int, default=3, help="passes over the corpus (default 3)")
    parser.add_argument("--first-runs", type=int, default=3,
                        help="fresh processes per first-message row (default 3; 0 skips them)")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON,
        help=f"report path (default {DEFAULT_JSON.relative_to(ROOT)})",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.n is not None and args.n < 1:
        parser.error("--n must be at least 1")
    report = run_bench(n=args.n, repeat=max(1, args.repeat), first_runs=max(0, args.first_runs))
    print(
        f"{report['messages']} messages (~{report['mean_words']} words) x {report['repeat']} "
        f"passes, after {report['warmup_per_stage']} warm-up calls per stage"
    )
    print(_table(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
