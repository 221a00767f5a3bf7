"""The HTTP API of ``airlock serve`` (FastAPI, SSE, JWT, rate limits)."""

from ui.api.app import create_api
from ui.api.settings import ServeSettings, ServeSettingsError

__all__ = ["ServeSettings", "ServeSettingsError", "create_api"]
