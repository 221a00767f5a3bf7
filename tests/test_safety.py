"""Layer 4: Llama Guard 3 over a real local OpenAI-compatible HTTP server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from nodes.guards.base import Action, GuardContext, GuardResult, register_guard
from nodes.guards.pipeline import GuardPipeline, LayerSpec
from nodes.guards.safety import (
    LLAMA_GUARD_3_CATEGORIES,
    SafetyClassifier,
    SafetyServiceError,
    build_llama_guard_prompt,
    parse_llama_guard_verdict,
)


@register_guard("test_escalate_always")
class _AlwaysEscalate:
    """A layer that always escalates, to drive the resolver in pipeline tests."""

    name: ClassVar[str]

    def check(self, text: str, ctx: GuardContext) -> GuardResult:
        return GuardResult(action=Action.ESCALATE, layer=self.name, reason="uncertain:test")


CANNED = {
    "bomb": "unsafe\nS9",
    "hate": "unsafe\nS1,S10",
    "weird": "I think this is fine",
    "elections": "unsafe\nS13",
}


class _Handler(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        if self.path.startswith("/error"):
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"overloaded")
            return
        if self.path.startswith("/notjson"):
            payload = b"<html>gateway</html>"
        else:
            content = body["messages"][-1]["content"]
            answer = "safe"
            conversation = content.split("<BEGIN CONVERSATION>")[-1]
            for word, verdict in CANNED.items():
                if word in conversation:
                    answer = verdict
            payload = json.dumps({
                "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": answer}}],
            }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _clear() -> None:
    _Handler.requests.clear()


def test_safe_message_is_allowed_and_prompt_has_the_llama_guard_3_format(server: str) -> None:
    guard = SafetyClassifier(base_url=f"{server}/v1", model="llama-guard3:8b", api_key="k-123")
    result = guard.check("Can I bring my guitar on board?", GuardContext())
    assert (result.action, result.reason) == (Action.ALLOW, "safe")
    (req,) = _Handler.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer k-123"
    body = req["body"]
    assert body["model"] == "llama-guard3:8b"
    assert body["temperature"] == 0
    assert [m["role"] for m in body["messages"]] == ["user"]
    prompt = body["messages"][0]["content"]
    assert prompt.startswith(
        "Task: Check if there is unsafe content in 'User' messages in conversations according "
        "our safety policy with the below categories.\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n"
        "S1: Violent Crimes.\nS2: Non-Violent Crimes.\n"
    )
    assert "S10: Hate.\nS11: Self-Harm.\nS12: Sexual Content.\nS13: Elections.\n" in prompt
    assert "S14: Code Interpreter Abuse.\n<END UNSAFE CONTENT CATEGORIES>\n\n" in prompt
    assert (
        "<BEGIN CONVERSATION>\n\nUser: Can I bring my guitar on board?\n\n<END CONVERSATION>"
        in prompt
    )
    assert prompt.endswith(
        "Provide your safety assessment for ONLY THE LAST User message in the above "
        "conversation:\n - First line must read 'safe' or 'unsafe'.\n - If unsafe, a second "
        "line must include a comma-separated list of violated categories."
    )
    assert [f"S{i}" for i in range(1, 15)] == list(LLAMA_GUARD_3_CATEGORIES)


def test_unsafe_verdict_blocks_with_categories(server: str) -> None:
    guard = SafetyClassifier(endpoint=f"{server}/v1/chat/completions")
    result = guard.check("I hate them all", GuardContext())
    assert (result.action, result.reason) == (Action.BLOCK, "unsafe:S1,S10")
    assert result.metadata["categories"] == ["S1", "S10"]
    assert result.scores == {"unsafe": 1.0}
    assert "hate" not in json.dumps(result.to_dict())


def test_output_direction_assesses_the_agent(server: str) -> None:
    guard = SafetyClassifier(base_url=server)
    guard.check("Here is how to build a bomb", GuardContext(direction="output"))
    prompt = _Handler.requests[0]["body"]["messages"][0]["content"]
    assert "unsafe content in 'Agent' messages" in prompt
    assert "\n\nAgent: Here is how to build a bomb\n\n" in prompt
    assert "ONLY THE LAST Agent message" in prompt


def test_category_subset_ignores_other_categories(server: str) -> None:
    guard = SafetyClassifier(base_url=server, categories=["S1", "S9", "S10"])
    assert guard.check("bomb threat", GuardContext()).reason == "unsafe:S9"
    relaxed = guard.check("who wins the elections", GuardContext())
    assert relaxed.action is Action.ALLOW
    assert relaxed.metadata["ignored_categories"] == ["S13"]
    prompt = _Handler.requests[0]["body"]["messages"][0]["content"]
    assert "S1: Violent Crimes.\nS9: Indiscriminate Weapons.\nS10: Hate.\n<END" in prompt
    assert "S2:" not in prompt


def test_custom_category_mapping_and_bare_mode(server: str) -> None:
    guard = SafetyClassifier(base_url=server, categories={"S9": "Weapons on aircraft."},
                             send_prompt=False)
    assert guard.check("bomb", GuardContext()).reason == "unsafe:S9"
    assert _Handler.requests[0]["body"]["messages"] == [{"role": "user", "content": "bomb"}]
    assert "S9: Weapons on aircraft." in build_llama_guard_prompt(
        "x", categories=guard.categories
    )


@pytest.mark.parametrize("path", ["/error", "/notjson", "/weird"])
def test_endpoint_failures_raise(server: str, path: str) -> None:
    guard = SafetyClassifier(endpoint=f"{server}{path}")
    text = "weird secret 4111 1111 1111 1111" if path == "/weird" else "secret 4111"
    with pytest.raises(SafetyServiceError) as err:
        guard.check(text, GuardContext())
    assert "4111" not in str(err.value)


def test_timeout_raises_and_pipeline_blocks_fail_safe(server: str) -> None:
    guard = SafetyClassifier(endpoint=f"{server}/slow", timeout_s=0.2)
    with pytest.raises(SafetyServiceError, match="timed out"):
        guard.check("hello", GuardContext())
    pipeline = GuardPipeline(layers=[
        LayerSpec(name="test_escalate_always"),
        LayerSpec(name="safety", params={"endpoint": f"{server}/slow", "timeout_s": 0.2},
                  only_if_escalated=True),
    ])
    result = pipeline.run("hello", GuardContext())
    assert (result.action, result.reason, result.layer) == (
        Action.BLOCK, "layer_error:safety", "safety"
    )
    assert result.decisions[-1].metadata["error_type"] == "SafetyServiceError"


def test_pipeline_escalation_resolved_by_llama_guard(server: str) -> None:
    pipeline = GuardPipeline(layers=[
        LayerSpec(name="test_escalate_always"),
        LayerSpec(name="safety", params={"base_url": server}, only_if_escalated=True),
    ])
    assert pipeline.run("a harmless question", GuardContext()).action is Action.ALLOW
    blocked = pipeline.run("how to smuggle a bomb", GuardContext())
    assert (blocked.action, blocked.reason) == (Action.BLOCK, "unsafe:S9")
    assert len(_Handler.requests) == 2


def test_unreachable_endpoint_raises() -> None:
    guard = SafetyClassifier(base_url="http://127.0.0.1:9", timeout_s=0.5)
    with pytest.raises(SafetyServiceError):
        guard.check("hello", GuardContext())


@pytest.mark.parametrize(
    ("action", "expected"),
    [("review", (Action.ESCALATE, "needs_review")),
     ("block", (Action.BLOCK, "uncertain_block")),
     ("allow", (Action.ALLOW, "uncertain_allow"))],
)
def test_without_endpoint_the_uncertain_action_applies(action: str, expected: tuple) -> None:
    result = SafetyClassifier(uncertain_action=action).check("x", GuardContext())  # type: ignore[arg-type]
    assert (result.action, result.reason) == expected


def test_parse_and_validation() -> None:
    assert parse_llama_guard_verdict("safe") == (False, ())
    assert parse_llama_guard_verdict("\n unsafe\nS1, S10\n") == (True, ("S1", "S10"))
    assert parse_llama_guard_verdict("Unsafe") == (True, ())
    with pytest.raises(SafetyServiceError):
        parse_llama_guard_verdict("")
    with pytest.raises(ValueError):
        SafetyClassifier(categories=["S99"])
    with pytest.raises(ValueError):
        SafetyClassifier(endpoint="http://a", base_url="http://b")
    with pytest.raises(ValueError):
        SafetyClassifier(uncertain_action="maybe")  # type: ignore[arg-type]
