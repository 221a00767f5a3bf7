"""Layer 4: a Llama Guard 3 style safety classifier for the uncertain band.

When an OpenAI-compatible chat-completions endpoint is configured (vLLM, Ollama,
llama.cpp, a hosted API), the layer sends the standard Llama Guard 3 task prompt with the
S1-S14 hazard categories and parses the verdict (``safe``, or ``unsafe`` and a line of
category codes). Without an endpoint, the policy's ``uncertain_action`` decides.

An endpoint that fails, times out or answers something unparseable raises
:class:`SafetyServiceError`; the pipeline turns that into a BLOCK (fail-safe) unless the
policy marks the layer fail-open. The text is never put into an exception message.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import httpx

from graph.errors import AirlockError
from nodes.guards.base import Action, GuardContext, GuardResult, register_guard

__all__ = [
    "LLAMA_GUARD_3_CATEGORIES",
    "SafetyClassifier",
    "SafetyServiceError",
    "build_llama_guard_prompt",
    "parse_llama_guard_verdict",
]

#: The Llama Guard 3 hazard taxonomy (MLCommons), as written in its prompt.
LLAMA_GUARD_3_CATEGORIES: Mapping[str, str] = {
    "S1": "Violent Crimes.",
    "S2": "Non-Violent Crimes.",
    "S3": "Sex Crimes.",
    "S4": "Child Exploitation.",
    "S5": "Defamation.",
    "S6": "Specialized Advice.",
    "S7": "Privacy.",
    "S8": "Intellectual Property.",
    "S9": "Indiscriminate Weapons.",
    "S10": "Hate.",
    "S11": "Self-Harm.",
    "S12": "Sexual Content.",
    "S13": "Elections.",
    "S14": "Code Interpreter Abuse.",
}

UncertainAction = Literal["review", "block", "allow"]


class SafetyServiceError(AirlockError, RuntimeError):
    """The safety endpoint failed, timed out or answered something unparseable."""


def build_llama_guard_prompt(
    text: str,
    *,
    role: Literal["User", "Agent"] = "User",
    categories: Mapping[str, str] = LLAMA_GUARD_3_CATEGORIES,
) -> str:
    """Return the Llama Guard 3 classification prompt for one message.

    Args:
        text: The message to assess (already PII-masked by the earlier layers).
        role: ``User`` for input and tool results, ``Agent`` for the model's answers.
        categories: Code -> description of the categories to check.
    """
    cats = "\n".join(f"{code}: {desc}" for code, desc in categories.items())
    return (
        f"Task: Check if there is unsafe content in '{role}' messages in conversations "
        "according our safety policy with the below categories.\n\n"
        "<BEGIN UNSAFE CONTENT CATEGORIES>\n"
        f"{cats}\n"
        "<END UNSAFE CONTENT CATEGORIES>\n\n"
        "<BEGIN CONVERSATION>\n\n"
        f"{role}: {text}\n\n"
        "<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {role} message in the above "
        "conversation:\n"
        " - First line must read 'safe' or 'unsafe'.\n"
        " - If unsafe, a second line must include a comma-separated list of violated "
        "categories."
    )


def parse_llama_guard_verdict(answer: str) -> tuple[bool, tuple[str, ...]]:
    r"""Parse ``safe`` / ``unsafe\nS1,S10`` into ``(unsafe, categories)``.

    Raises:
        SafetyServiceError: The answer is neither.
    """
    lines = [ln.strip() for ln in answer.strip().splitlines() if ln.strip()]
    if not lines:
        raise SafetyServiceError("empty safety verdict")
    head = lines[0].lower().rstrip(".")
    if head == "safe":
        return False, ()
    if head != "unsafe":
        raise SafetyServiceError("unparseable safety verdict")
    codes: list[str] = []
    for line in lines[1:2]:
        for part in line.replace(";", ",").split(","):
            code = part.strip().upper()
            if code:
                codes.append(code)
    return True, tuple(dict.fromkeys(codes))


@register_guard("safety")
class SafetyClassifier:
    """Layer 4: Llama Guard over an OpenAI-compatible endpoint, or the uncertain action.

    Decisions: BLOCK ``unsafe:S1,S10`` / ALLOW ``safe`` with an endpoint; without one,
    BLOCK ``uncertain_block``, ALLOW ``uncertain_allow`` or ESCALATE ``needs_review``.
    """

    name: ClassVar[str]

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        base_url: str | None = None,
        model: str = "llama-guard3",
        api_key: str | None = None,
        timeout_s: float = 10.0,
        categories: Sequence[str] | Mapping[str, str] | None = None,
        uncertain_action: UncertainAction = "review",
        send_prompt: bool = True,
    ) -> None:
        """Configure the layer.

        Args:
            endpoint: Full chat-completions URL (``http://host:8000/v1/chat/completions``).
            base_url: OpenAI-style base URL (``http://host:8000/v1``); ``/chat/completions``
                is appended. Give one of ``endpoint`` / ``base_url``, or neither.
            model: Model name sent in the request.
            api_key: Bearer token, if the endpoint needs one.
            timeout_s: Per-request timeout in seconds.
            categories: Category codes to check (a subset of S1-S14), or a mapping of custom
                codes to descriptions. Default: all of S1-S14. An ``unsafe`` verdict that
                names only categories outside this set is treated as safe.
            uncertain_action: What to do without an endpoint.
            send_prompt: Send the full Llama Guard prompt as the user message (default).
                False sends the bare message and relies on the server's Llama Guard chat
                template (Ollama's ``llama-guard3`` does this itself).
        """
        if endpoint and base_url:
            raise ValueError("give either endpoint or base_url, not both")
        if uncertain_action not in ("review", "block", "allow"):
            raise ValueError("uncertain_action must be 'review', 'block' or 'allow'")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        url = endpoint or (base_url.rstrip("/") + "/chat/completions" if base_url else None)
        self.url: str | None = url
        self.model = model
        self.timeout_s = float(timeout_s)
        self.uncertain_action: UncertainAction = uncertain_action
        self.send_prompt = send_prompt
        self.categories = _categories(categories)
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(timeout=self.timeout_s, headers=self._headers)
        return self._client

    def warm_up(self) -> None:
        """Open the HTTP client at start-up (no request is sent)."""
        if self.url is not None:
            self._http()

    def close(self) -> None:
        """Close the HTTP connection pool."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _uncertain(self) -> GuardResult:
        if self.uncertain_action == "block":
            return GuardResult(action=Action.BLOCK, layer=self.name, reason="uncertain_block")
        if self.uncertain_action == "allow":
            return GuardResult(action=Action.ALLOW, layer=self.name, reason="uncertain_allow")
        return GuardResult(action=Action.ESCALATE, layer=self.name, reason="needs_review")

    def classify(self, text: str, *, role: Literal["User", "Agent"] = "User") -> str:
        """Send one message to the endpoint and return the model's raw answer.

        Raises:
            SafetyServiceError: No endpoint, HTTP error, timeout, or a malformed response.
        """
        if self.url is None:
            raise SafetyServiceError("no safety endpoint configured")
        content = (
            build_llama_guard_prompt(text, role=role, categories=self.categories)
            if self.send_prompt
            else text
        )
        role_name = "assistant" if (role == "Agent" and not self.send_prompt) else "user"
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": role_name, "content": content}],
            "temperature": 0,
            "max_tokens": 24,
            "stream": False,
        }
        try:
            response = self._http().post(self.url, json=payload)
            response.raise_for_status()
            body = response.json()
            answer = body["choices"][0]["message"]["content"]
        except httpx.TimeoutException:
            raise SafetyServiceError("safety endpoint timed out") from None
        except httpx.HTTPStatusError as exc:
            raise SafetyServiceError(
                f"safety endpoint returned HTTP {exc.response.status_code}"
            ) from None
        except httpx.HTTPError as exc:
            raise SafetyServiceError(f"safety endpoint failed: {type(exc).__name__}") from None
        except (ValueError, KeyError, IndexError, TypeError):
            raise SafetyServiceError("malformed safety endpoint response") from None
        if not isinstance(answer, str):
            raise SafetyServiceError("malformed safety endpoint response")
        return answer

    def check(self, text: str, ctx: GuardContext | None = None) -> GuardResult:
        """Classify ``text`` (raises :class:`SafetyServiceError` if the endpoint fails)."""
        if self.url is None:
            return self._uncertain()
        role: Literal["User", "Agent"] = (
            "Agent" if ctx is not None and ctx.direction == "output" else "User"
        )
        unsafe, codes = parse_llama_guard_verdict(self.classify(text, role=role))
        relevant = [c for c in codes if c in self.categories] if codes else []
        if unsafe and (relevant or not codes):
            found = relevant or ["unspecified"]
            return GuardResult(
                action=Action.BLOCK,
                layer=self.name,
                reason="unsafe:" + ",".join(found),
                scores={"unsafe": 1.0},
                metadata={"categories": found, "model": self.model},
            )
        return GuardResult(
            action=Action.ALLOW,
            layer=self.name,
            reason="safe",
            scores={"unsafe": 0.0},
            metadata={"model": self.model, "ignored_categories": list(codes)},
        )


def _categories(categories: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    if categories is None:
        return dict(LLAMA_GUARD_3_CATEGORIES)
    if isinstance(categories, Mapping):
        out = {str(k).upper(): str(v) for k, v in categories.items()}
    else:
        if isinstance(categories, str):
            raise TypeError("categories must be a list of codes or a mapping code -> description")
        out = {}
        for code in categories:
            key = str(code).upper()
            if key not in LLAMA_GUARD_3_CATEGORIES:
                raise ValueError(f"unknown Llama Guard 3 category {code!r}; use S1-S14")
            out[key] = LLAMA_GUARD_3_CATEGORIES[key]
    if not out:
        raise ValueError("categories must not be empty")
    return out
