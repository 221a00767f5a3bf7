"""Langfuse tracing: its LangChain callback when keys are set; silent and offline when not."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["tracing_callbacks"]

log = logging.getLogger(__name__)
_HANDLER: list[Any] = []


def tracing_callbacks(environ: Mapping[str, str] | None = None) -> list[Any]:
    """Return ``[CallbackHandler]`` when LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY are set, else ``[]``.

    The handler is created once per process and attached to the model call only, so traces
    carry the guarded (PII-masked) conversation the model sees.
    """
    env = os.environ if environ is None else environ
    if not (env.get("LANGFUSE_PUBLIC_KEY") and env.get("LANGFUSE_SECRET_KEY")):
        return []
    if not _HANDLER:
        try:
            from langfuse.langchain import CallbackHandler
        except ImportError:  # pragma: no cover - langfuse is a dependency
            log.warning("LANGFUSE_* is set but langfuse is not installed: pip install langfuse")
            return []
        _HANDLER.append(CallbackHandler(public_key=env["LANGFUSE_PUBLIC_KEY"]))
    return list(_HANDLER)
