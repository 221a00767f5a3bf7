"""PII is analysed once per text in a guarded turn, and what is already masked is not masked again.

A turn shows the same text to several PII steps: the checkpoint scrubber and the input guard see
the customer's message, the scrubber sees the input guard's masked text again, a review masks
its arguments for the request and for its record and gets the tool result the tool-result guard
already masked. Each distinct text must reach Presidio's analyzer once, and the audit log and
the review must still hold placeholders only.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from graph.runtime import AirlockServices, AirlockSettings
from graph.service import AirlockApp
from nodes.guards import pii
from nodes.guards.pii_cache import _Analysis
from nodes.guards.vault import InMemoryVault
from tests.helpers import wait_until

pytestmark = pytest.mark.postgres

USER = "lei_rossi_3206"
NAME = "Ana Lopez"


@pytest.fixture
def services(database_url: str, tmp_path: Any) -> Iterator[AirlockServices]:
    s = AirlockServices.start(AirlockSettings(database_url=database_url, data_dir=tmp_path / "data",
                                              model_provider="offline"))
    yield s
    s.close()


@pytest.fixture
def analysed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Digests of the texts handed to Presidio's ``AnalyzerEngine.analyze``, one per call."""
    calls: list[str] = []
    analyzer = pii.get_analyzer()
    real = analyzer.analyze

    def counting(text: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(hashlib.sha256(text.encode()).hexdigest()[:12])
        return real(text, *args, **kwargs)

    monkeypatch.setattr(analyzer, "analyze", counting)
    return calls


def _turn(app: AirlockApp, text: str, calls: list[str]) -> tuple[str, Counter[str], Any]:
    thread = app.new_thread(user_id=USER)
    calls.clear()
    reply = app.send(thread_id=thread, user_id=USER, text=text)
    return thread, Counter(calls), reply


def _audit_text(services: AirlockServices, thread: str) -> str:
    with services.pool.connection() as conn:
        rows = conn.execute("SELECT payload FROM audit_events WHERE thread_id = %s", (thread,)).fetchall()
        reviews = conn.execute("SELECT * FROM reviews WHERE thread_id = %s", (thread,)).fetchall()
    return json.dumps([r["payload"] for r in rows] + [dict(r) for r in reviews], default=str)  # type: ignore[index]


def test_a_guarded_turn_analyses_each_distinct_text_once(services: AirlockServices, analysed: list[str]) -> None:
    app = AirlockApp(services=services)
    _turn(app, "Show me reservation VAAOXJ", analysed)  # warm: models, pools
    thread, counts, _ = _turn(app, f"My name is {NAME}, please add 1 bag to VAAOXJ", analysed)
    # The message, the tool result and the answer: three texts, each analysed once (before
    # the reuse: the message three times, and its masked copy twice more by the checkpoint
    # scrubber, which now stores the input guard's own masked text as it is).
    assert len(counts) == 3 and set(counts.values()) == {1}, counts
    assert NAME not in _audit_text(services, thread)


def test_a_reviewed_turn_analyses_each_distinct_text_once_and_the_review_stays_masked(
        services: AirlockServices, analysed: list[str]) -> None:
    app = AirlockApp(services=services)
    _turn(app, "Show me reservation VAAOXJ", analysed)
    thread, counts, reply = _turn(app, f"My name is {NAME}, please transfer me to a human agent", analysed)
    assert [p.kind for p in reply.pending] == ["review"], "the hand-off waits for a reviewer"
    # The message, the tool result and the hand-off's arguments (before: eight analyses; the
    # review masked its arguments twice and the already masked result again).
    assert len(counts) == 3 and set(counts.values()) == {1}, counts
    recorded = _audit_text(services, thread)
    assert NAME not in recorded and "Lopez" not in recorded


def test_without_the_cache_the_same_message_is_analysed_several_times(
        services: AirlockServices, analysed: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pii, "_ANALYSES", pii._AnalysisCache(size=0))
    app = AirlockApp(services=services)
    _turn(app, "Show me reservation VAAOXJ", analysed)
    _, counts, _ = _turn(app, f"My name is {NAME}, please add 1 bag to VAAOXJ", analysed)
    assert max(counts.values()) >= 2  # the scrubber and the input guard each analyse the message


def test_a_cached_analysis_masks_exactly_as_a_fresh_one() -> None:
    text = f"My name is {NAME}, e-mail ana.lopez@example.com, reservation VAAOXJ, card 4111 1111 1111 1111"
    fresh, found = pii.mask_text(text, InMemoryVault(thread_id="a"))
    before = pii.analysis_cache_info()
    again, found_again = pii.mask_text(text, InMemoryVault(thread_id="a"))
    after = pii.analysis_cache_info()
    assert after["hits"] == before["hits"] + 1 and after["misses"] == before["misses"]
    assert again == fresh and [e.placeholder for e in found_again] == [e.placeholder for e in found]
    assert NAME not in again and "ana.lopez@example.com" not in again and "4111" not in again


def test_the_same_vault_gives_the_same_placeholders_from_a_cached_analysis() -> None:
    vault = InMemoryVault(thread_id="t")
    first, _ = pii.mask_text(f"I am {NAME}", vault)
    second, _ = pii.mask_text(f"I am {NAME}", vault)
    assert first == second == "I am <PERSON_1>"
    assert vault.get("<PERSON_1>") == NAME


def test_allow_lists_apply_to_a_shared_analysis() -> None:
    text = "My name is Heathrow Smith and I fly from Gatwick"
    plain, _ = pii.mask_text(text)
    allowed, _ = pii.mask_text(text, allow=["Heathrow Smith"])
    assert "Heathrow Smith" not in plain and "Heathrow Smith" in allowed
    assert pii.analysis_cache_info()["hits"] >= 1  # the second call reused the first's analysis


def test_new_allowances_are_not_served_from_an_older_analysis() -> None:
    text = "Please call Zed Quixley about reservation QX12AB"
    pii.mask_text(text)
    misses = pii.analysis_cache_info()["misses"]
    pii.use_allowances(pii.allowances())  # the served domain's allowances set again
    pii.mask_text(text)
    assert pii.analysis_cache_info()["misses"] == misses + 1


def test_the_cache_keeps_no_text() -> None:
    secret = "my SSN is 123-45-6789"
    pii.mask_text(secret)
    for key, analysis in pii._ANALYSES._items.items():
        assert secret not in repr(key) and "123-45-6789" not in repr(analysis)


def test_bench_pii_has_help() -> None:
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run([sys.executable, "-m", "ui.cli", "bench", "pii", "--help"],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "analyzer calls" in done.stdout


def _held_analysis(runs: list[int], started: threading.Event, release: threading.Event, *, fail: bool = False):
    def analyse() -> Any:
        runs.append(1)
        started.set()
        assert release.wait(60), "the test never released the analysis"
        if fail:
            raise RuntimeError("layer deadline")
        return _Analysis(chunks=(), ner_ran=False)
    return analyse


def _two_callers(cache: pii._AnalysisCache, *, first_fails: bool) -> tuple[Any, Any, list[int]]:
    """Run two analyses of one text at once, the second asked while the first is running."""
    runs: list[int] = []
    started, release = threading.Event(), threading.Event()
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(cache.get_or_analyse, ("text",), _held_analysis(runs, started, release, fail=first_fails))
        assert started.wait(60)
        second = pool.submit(cache.get_or_analyse, ("text",), _held_analysis(runs, started, release))
        try:
            wait_until(lambda: cache.waiting == 1, "the second caller waits for the first analysis")
        finally:
            release.set()
        return first.exception(60) or first.result(60), second.result(60), runs


def test_two_callers_meeting_the_same_text_at_once_run_one_analysis() -> None:
    # The scrubber (writing the input checkpoint) and the input guard meet the message at the
    # same moment: CI saw both analyse it. The second must wait for the first's result.
    cache = pii._AnalysisCache()
    first, second, runs = _two_callers(cache, first_fails=False)
    assert first is second
    assert runs == [1] and cache.misses == 1 and cache.hits == 1 and cache.waiting == 0


def test_when_the_analysis_a_caller_waits_for_fails_it_runs_its_own() -> None:
    cache = pii._AnalysisCache()
    first, second, runs = _two_callers(cache, first_fails=True)
    assert isinstance(first, RuntimeError) and second.chunks == ()
    assert runs == [1, 1] and cache.misses == 2 and cache._running == {}
