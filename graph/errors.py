"""The one exception root of airlock: every error the engine raises derives from it."""

from __future__ import annotations

__all__ = ["AirlockError"]


class AirlockError(Exception):
    """Base of every airlock error; catch this to handle anything airlock raises on purpose."""
