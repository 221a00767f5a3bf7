"""Shapes of text that used to take the guards minutes (issue 9: one message froze the process).

Each case took 60-120 s before the fix (a cubic regex on runs of blanks, spaCy's tokenizer on
runs of punctuation). The timeout only turns such a hang into a failure; nothing here measures
speed (that is `airlock bench`).
"""

from __future__ import annotations

import pytest

from graph.policy import load_policy
from graph.runtime import build_pipeline
from tools.airline import POLICY_PATH

SHAPES = {
    "spaces before a cue": "I want to add bags to my reservation" + " " * 1500 + "ABC123 born",
    "tabs after a DOB cue": "date of birth" + "\t" * 1500 + "1990",
    "German DOB cue then blanks": "geboren am " + " " * 1500 + "x",
    "blank and tab mix": "dob: " + " \t" * 750 + "x",
    "punctuation run": "!" * 3900,
    "mixed punctuation run": "!?.,;:-_*#" * 390,
}


@pytest.fixture(scope="module")
def pipelines():
    policy = load_policy(POLICY_PATH)
    return {
        "input": build_pipeline(policy.guards.input),
        "output": build_pipeline(policy.guards.output),
        "tool_result": build_pipeline(policy.guards.tool_result),
    }


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["input", "output", "tool_result"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_pathological_text_gets_a_decision(pipelines, kind, shape):
    result = pipelines[kind].run(SHAPES[shape])
    assert result.action in {"allow", "block", "modify", "escalate"}


def test_segments_split_like_the_regex_they_replace_without_its_backtracking() -> None:
    """Sentence/line segments: one scan of whitespace runs, the same pieces as the old regex.

    The old ``(?<=[.!?;。！？])\\s+|\\s*\\n\\s*`` backtracked through every position of a long
    run of spaces without a newline (32,000 spaces: 1.4 s in the tool-result scanner).
    """
    import random
    import re

    from nodes.guards.classifiers import _split_segments, segments

    old = re.compile(r"(?<=[.!?;\u3002\uff01\uff1f])\s+|\s*\n\s*")
    rng = random.Random(7)
    alphabet = "ab .!?;\n\t \u3002\u00a0x\r"
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert [p for p in _split_segments(text) if p and not p.isspace()] == [
            p for p in old.split(text) if p and not p.isspace()], repr(text)
    # A long run without a newline is one piece, found by one pass over one whitespace run.
    assert segments("add bags to ABC123" + " " * 32000 + "born") == []
    assert segments("One.  Two\n\n three") == ["One.", "Two", "three"]
