"""Build the agent's chat model from settings (explicit values or environment variables).

Two providers:

- ``openai``: ``langchain_openai.ChatOpenAI`` against any OpenAI-compatible endpoint (OpenAI,
  vLLM, Ollama, llama.cpp server ...). A local endpoint needs only a base URL.
- ``offline``: the domain's rule-based planner (a :class:`~nodes.model.offline.OfflinePlanner`,
  ``DomainPlugin.offline_planner``; no LLM).

Environment variables read by :meth:`ModelSettings.from_env`:

- ``AIRLOCK_MODEL_PROVIDER``: ``offline`` or ``openai`` (aliases: ``vllm``, ``ollama``,
  ``llamacpp``, ``openai-compatible``). Default: ``openai`` when ``OPENAI_API_KEY`` or a base
  URL is set, else ``offline``.
- ``AIRLOCK_MODEL``: the model name (default ``gpt-4o-mini``).
- ``AIRLOCK_OPENAI_BASE_URL``, else ``OPENAI_BASE_URL``: the endpoint.
- ``OPENAI_API_KEY``: the key (optional for a local endpoint).
- ``AIRLOCK_MODEL_TEMPERATURE``: the sampling temperature (default 0).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from langchain_core.language_models.chat_models import BaseChatModel

from graph.errors import AirlockError
from nodes.model.offline import OfflinePlanner
from nodes.model.scripted import ScriptedChatModel

__all__ = [
    "DEFAULT_MODEL",
    "OFFLINE_LABEL",
    "OPENAI_DEFAULT_BASE_URL",
    "ModelConfigError",
    "ModelSettings",
    "Provider",
    "describe_model",
    "make_chat_model",
]

Provider = Literal["offline", "openai"]
DEFAULT_MODEL = "gpt-4o-mini"
OFFLINE_LABEL = "offline rule-based planner (no LLM)"
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Local OpenAI-compatible servers ignore the key, but the OpenAI client refuses to start without
# one; this placeholder is what their docs suggest.
_LOCAL_API_KEY = "not-needed"
_REQUEST_TIMEOUT_S = 60.0
_MAX_RETRIES = 2
_PROVIDER_ALIASES: Mapping[str, Provider] = {
    "offline": "offline",
    "openai": "openai",
    "openai-compatible": "openai",
    "openai_compatible": "openai",
    "vllm": "openai",
    "ollama": "openai",
    "llamacpp": "openai",
    "llama.cpp": "openai",
    "llama-cpp": "openai",
}


class ModelConfigError(AirlockError, ValueError):
    """The model settings are invalid or incomplete; the message says what to set."""


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelSettings:
    """Which chat model the agent uses.

    Attributes:
        provider: ``"openai"`` (any OpenAI-compatible endpoint) or ``"offline"``.
        model: The model name sent to the endpoint (ignored by the offline planner).
        base_url: The endpoint, e.g. ``http://127.0.0.1:8000/v1`` for vLLM; None = OpenAI.
        api_key: The API key; not shown in ``repr``.
        temperature: The sampling temperature.
    """

    provider: Provider
    model: str = DEFAULT_MODEL
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    temperature: float = 0

    def __post_init__(self) -> None:
        if self.provider not in ("offline", "openai"):
            raise ModelConfigError(
                f"Unknown model provider {self.provider!r}: set AIRLOCK_MODEL_PROVIDER to "
                "'offline' (rule-based planner, no LLM) or 'openai' (any OpenAI-compatible "
                "endpoint: OpenAI, vLLM, Ollama, llama.cpp)."
            )
        if not self.model.strip():
            raise ModelConfigError("The model name is empty: set AIRLOCK_MODEL (e.g. gpt-4o-mini).")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ModelConfigError(
                f"The model base URL must start with http:// or https:// (got {self.base_url!r}): "
                "fix AIRLOCK_OPENAI_BASE_URL / OPENAI_BASE_URL."
            )
        if not 0 <= self.temperature <= 2:
            raise ModelConfigError(
                f"The temperature must be between 0 and 2 (got {self.temperature}): "
                "fix AIRLOCK_MODEL_TEMPERATURE."
            )
        if self.provider == "openai" and not self.api_key and not self.base_url:
            raise ModelConfigError(
                "Model provider 'openai' needs OPENAI_API_KEY (for api.openai.com) or "
                "AIRLOCK_OPENAI_BASE_URL (for a local OpenAI-compatible server such as vLLM, "
                "Ollama or llama.cpp, e.g. http://127.0.0.1:11434/v1). To run without an LLM, "
                "set AIRLOCK_MODEL_PROVIDER=offline."
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ModelSettings:
        """Read the settings from environment variables (see the module docstring).

        Args:
            environ: The environment to read; defaults to ``os.environ``.

        Returns:
            The validated settings.

        Raises:
            ModelConfigError: If a value is invalid or the ``openai`` provider lacks both an
                API key and a base URL.
        """
        api_key = _env(environ, "OPENAI_API_KEY")
        base_url = _env(environ, "AIRLOCK_OPENAI_BASE_URL") or _env(environ, "OPENAI_BASE_URL")
        raw = _env(environ, "AIRLOCK_MODEL_PROVIDER")
        provider: Provider
        if raw is None:
            explicit_url = _env(environ, "AIRLOCK_OPENAI_BASE_URL")
            provider = "openai" if (api_key or explicit_url) else "offline"
        else:
            alias = _PROVIDER_ALIASES.get(raw.lower())
            if alias is None:
                raise ModelConfigError(
                    f"AIRLOCK_MODEL_PROVIDER={raw!r} is not supported: use 'offline' or "
                    "'openai' (also accepted for OpenAI-compatible servers: vllm, ollama, "
                    "llamacpp)."
                )
            provider = alias
        temperature_text = _env(environ, "AIRLOCK_MODEL_TEMPERATURE")
        try:
            temperature = float(temperature_text) if temperature_text is not None else 0.0
        except ValueError:
            raise ModelConfigError(
                f"AIRLOCK_MODEL_TEMPERATURE={temperature_text!r} is not a number."
            ) from None
        return cls(
            provider=provider,
            model=_env(environ, "AIRLOCK_MODEL") or DEFAULT_MODEL,
            base_url=base_url,
            api_key=api_key,
            temperature=temperature,
        )


def make_chat_model(
    settings: ModelSettings | None = None, *, offline: Callable[[], BaseChatModel] | None = None,
    domain: str = "this",
) -> BaseChatModel:
    """Return the chat model described by ``settings`` (default: from the environment).

    Building a ``ChatOpenAI`` makes no network call; the first request does.

    Args:
        settings: The settings; None reads them with :meth:`ModelSettings.from_env`.
        offline: The domain's offline planner factory (``DomainPlugin.offline_planner``).
        domain: The domain's name, for the error when it has no offline planner.

    Returns:
        A ``ChatOpenAI`` for the ``openai`` provider, else the domain's offline planner.

    Raises:
        ModelConfigError: The ``offline`` provider for a domain without an offline planner.
    """
    settings = settings or ModelSettings.from_env()
    if settings.provider == "offline":
        if offline is None:
            raise ModelConfigError(
                f"the {domain} domain has no offline planner: set AIRLOCK_MODEL_PROVIDER=openai "
                "(with OPENAI_API_KEY or AIRLOCK_OPENAI_BASE_URL)"
            )
        return offline()
    # Imported here: langchain_openai (and the openai client) are slow to import and unused
    # by the offline planner.
    from langchain_openai import ChatOpenAI

    kwargs: dict[str, Any] = {
        "model": settings.model,
        "temperature": settings.temperature,
        "api_key": settings.api_key or _LOCAL_API_KEY,
        "timeout": _REQUEST_TIMEOUT_S,
        "max_retries": _MAX_RETRIES,
    }
    if settings.base_url:
        kwargs["base_url"] = settings.base_url
    return cast(BaseChatModel, ChatOpenAI(**kwargs))


def describe_model(model: object) -> str:
    """Return a short label for the UI, e.g. ``openai:gpt-4o-mini @ https://...``.

    Args:
        model: A chat model, or a runnable binding wrapping one (from ``bind_tools``).

    Returns:
        The label; the offline planner is always labelled as not being an LLM.
    """
    inner = model
    for _ in range(5):  # unwrap RunnableBinding(s) from bind_tools / with_config
        bound = getattr(inner, "bound", None)
        if bound is None:
            break
        inner = bound
    if isinstance(inner, OfflinePlanner):
        return OFFLINE_LABEL
    if isinstance(inner, ScriptedChatModel):
        return f"scripted test model ({len(inner.script)} responses)"
    name = getattr(inner, "model_name", None) or getattr(inner, "model", None)
    if type(inner).__module__.startswith("langchain_openai"):
        base = getattr(inner, "openai_api_base", None) or OPENAI_DEFAULT_BASE_URL
        return f"openai:{name} @ {base}"
    llm_type = getattr(inner, "_llm_type", None) or type(inner).__name__
    return f"{llm_type}:{name}" if name else str(llm_type)
