"""Errors as RFC 9457 problem+json, and the mapping from service errors to HTTP statuses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from graph.errors import AirlockError
from graph.service import NotAllowedError, StaleAnswerError, StaleReviewError
from ui.api.tokens import TokenError

__all__ = ["PROBLEM_JSON", "Problem", "install_problem_handlers", "problem_response"]

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
           409: "Conflict", 413: "Payload too large", 415: "Unsupported media type", 422: "Unprocessable content",
           429: "Too many requests", 500: "Internal server error", 503: "Service unavailable"}


class Problem(AirlockError):
    """An error with an HTTP status, a message for the client and optional extra members."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem_response(status: int, detail: str, *, headers: dict[str, str] | None = None,
                     **extra: Any) -> JSONResponse:
    """Return a problem+json response; ``message`` repeats ``detail`` for simple clients."""
    body = {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status,
            "detail": detail, "message": detail, **extra}
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def install_problem_handlers(app: FastAPI) -> None:
    """Turn every error the API raises into problem+json (never a traceback)."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, headers=exc.headers, **exc.extra)

    @app.exception_handler(TokenError)
    async def _token(request: Request, exc: TokenError) -> JSONResponse:
        return problem_response(401, str(exc), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    @app.exception_handler(StaleReviewError)
    async def _stale(request: Request, exc: StaleReviewError) -> JSONResponse:
        return problem_response(409, str(exc))

    @app.exception_handler(StaleAnswerError)
    async def _stale_answer(request: Request, exc: StaleAnswerError) -> JSONResponse:
        return problem_response(409, str(exc))

    @app.exception_handler(NotAllowedError)
    async def _not_allowed(request: Request, exc: NotAllowedError) -> JSONResponse:
        return problem_response(403, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in exc.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        return problem_response(422, f"{'.'.join(first['loc'])}: {first['msg']}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

    @app.exception_handler(ValueError)
    async def _value(request: Request, exc: ValueError) -> JSONResponse:
        return problem_response(422, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return problem_response(500, "internal error; see the server log")
