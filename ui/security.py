"""Web security around the Gradio app: one ASGI middleware in front of everything it serves.

What it enforces (README, "Web security"):

* **Cross-site requests.** Every state-changing request (any method but GET, HEAD, OPTIONS) must
  come from an allowed origin: its ``Origin`` header (or, without one, its ``Referer``) must be
  one of ``AIRLOCK_ALLOWED_ORIGINS``; ``Origin: null`` and a browser's ``Sec-Fetch-Site:
  cross-site``/``same-site`` are refused. Ports count: a page on another port of the same host is
  another origin (cookies do not know ports, so ``SameSite`` alone cannot stop it). A request
  without any of these headers comes from a program, not a browser, and carries no victim's
  cookies. Session cookies are rewritten to ``SameSite=Strict``; an unknown ``Host`` is refused
  (DNS rebinding); no CORS header is ever granted to another origin, and its preflights are
  refused. Signed-in browser pages also carry a per-session CSRF token (HMAC of the session, in a
  ``<meta>`` tag of the page) that the page's own requests send back in ``X-Airlock-CSRF``; a
  browser request that carries a session but a wrong token is refused.
* **Framing and content.** ``Content-Security-Policy`` (``frame-ancestors 'none'``, scripts and
  connections from the app only), ``X-Frame-Options: DENY``, ``nosniff``, a same-origin referrer.
* **Sessions.** Logout is a POST that ends this session only (``GET /logout`` shows a button and
  ends nothing). A session ends after ``AIRLOCK_SESSION_IDLE`` without a request or
  ``AIRLOCK_SESSION_MAX`` after sign-in, whichever comes first. State-changing ``/gradio_api/``
  calls (``/gradio_api/cancel`` included) need a live session. Gradio's per-browser-tab state is
  dropped when the tab has been idle for the session idle time (closed tabs after five minutes)
  and at most ``AIRLOCK_MAX_BROWSER_SESSIONS`` are kept.
* **Size.** A request body over ``AIRLOCK_MAX_BODY_BYTES`` is refused with 413 before the app
  reads it.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from graph.body_limit import BodyLimitMiddleware, max_body_bytes
from graph.errors import AirlockError
from ui.auth import is_loopback
from ui.login_throttle import ThrottleLimits

__all__ = [
    "CSRF_HEADER",
    "ConfigError",
    "PrefixDispatch",
    "SessionRegistry",
    "WebSecurityMiddleware",
    "WebSecuritySettings",
    "client_address",
    "parse_duration",
    "reap_browser_state",
    "secure_gradio_app",
]

CSRF_HEADER = "x-airlock-csrf"
SESSION_COOKIE_PREFIX = "access-token-"  # Gradio's session cookies: access-token[-unsecure]-<id>
CLOSED_TAB_TTL_S = 300.0
_SWEEP_EVERY_S = 30.0
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    # Gradio's page boots from inline scripts and styles; everything else comes from the app.
    "script-src 'self' 'unsafe-inline'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "media-src 'self' data: blob:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)

_client_address: contextvars.ContextVar[str] = contextvars.ContextVar("airlock_client_address", default="")


def client_address() -> str:
    """Return the address of the client whose request is being handled ('' outside a request)."""
    return _client_address.get()


class ConfigError(AirlockError, ValueError):
    """A web-security setting is invalid; the message names the variable and what it accepts."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str, *, name: str) -> float:
    """Parse ``90``, ``90s``, ``30m``, ``12h`` or ``1d`` into seconds.

    Args:
        text: The value.
        name: The variable it came from (for the error message).

    Returns:
        The duration in seconds.

    Raises:
        ConfigError: If the value is not a duration.
    """
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"{name}={text!r}: expected a duration such as 900, 30m, 12h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _origin(url: str) -> str | None:
    """Return ``scheme://host[:port]`` of a URL (lower-case), or None if it has none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSecuritySettings:
    """The validated web-security settings (see the README's configuration table).

    Attributes:
        allowed_origins: The origins (``scheme://host[:port]``) the app is served at.
        session_idle_s: A session ends after this long without a request.
        session_max_s: A session ends this long after sign-in.
        max_body_bytes: The largest request body accepted.
        max_browser_sessions: How many browser tabs' Gradio state the process keeps at most.
        login: The login throttle's limits.
    """

    allowed_origins: tuple[str, ...]
    session_idle_s: float = 1800.0
    session_max_s: float = 43200.0
    max_body_bytes: int = 1_048_576
    max_browser_sessions: int = 1000
    login: ThrottleLimits = field(default_factory=ThrottleLimits)

    def __post_init__(self) -> None:
        """Refuse settings that would switch a protection off."""
        if not self.allowed_origins:
            raise ConfigError("AIRLOCK_ALLOWED_ORIGINS: at least one origin is needed")
        for origin in self.allowed_origins:
            if _origin(origin) != origin:
                raise ConfigError(f"AIRLOCK_ALLOWED_ORIGINS: {origin!r} is not an origin "
                                  "such as https://airlock.example.com or http://127.0.0.1:7860")
        if not 60 <= self.session_idle_s <= 7 * 86400:
            raise ConfigError("AIRLOCK_SESSION_IDLE must be between 1m and 7d")
        if not self.session_idle_s <= self.session_max_s <= 30 * 86400:
            raise ConfigError("AIRLOCK_SESSION_MAX must be at least AIRLOCK_SESSION_IDLE and at most 30d")
        if not 16_384 <= self.max_body_bytes <= 100 * 1_048_576:
            raise ConfigError("AIRLOCK_MAX_BODY_BYTES must be between 16384 and 104857600")
        if not 10 <= self.max_browser_sessions <= 1_000_000:
            raise ConfigError("AIRLOCK_MAX_BROWSER_SESSIONS must be between 10 and 1000000")

    @property
    def allowed_hosts(self) -> frozenset[str]:
        """Return the ``Host`` header values the app answers to."""
        return frozenset(o.split("://", 1)[1] for o in self.allowed_origins)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, host: str, port: int) -> WebSecuritySettings:
        """Read and validate the settings from the environment.

        Args:
            environ: The environment.
            host: The address the app listens on.
            port: The port it listens on.

        Returns:
            The settings.

        Raises:
            ConfigError: If a value is invalid, or the app listens beyond loopback without
                ``AIRLOCK_ALLOWED_ORIGINS``.
        """
        raw = (environ.get("AIRLOCK_ALLOWED_ORIGINS") or "").strip()
        if raw:
            origins = tuple(dict.fromkeys(o.strip().rstrip("/") for o in raw.split(",") if o.strip()))
        elif is_loopback(host):
            origins = (f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"http://[::1]:{port}")
        else:
            raise ConfigError(
                f"AIRLOCK_ALLOWED_ORIGINS is required when listening on {host}: set it to the "
                "address(es) browsers use, e.g. https://airlock.example.com"
            )

        def number(name: str, default: int) -> int:
            value = (environ.get(name) or "").strip()
            if not value:
                return default
            if not value.isdigit():
                raise ConfigError(f"{name}={value!r}: expected a whole number")
            return int(value)

        def duration(name: str, default: float) -> float:
            value = (environ.get(name) or "").strip()
            return parse_duration(value, name=name) if value else default

        try:
            body_limit = max_body_bytes(environ)  # the same rule as the LangGraph server's
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        try:
            limits = ThrottleLimits(
                per_pair=number("AIRLOCK_LOGIN_LIMIT_USER", 5),
                per_address=number("AIRLOCK_LOGIN_LIMIT_ADDRESS", 50),
                window_s=int(duration("AIRLOCK_LOGIN_WINDOW", 300)),
            )
        except ValueError as exc:
            raise ConfigError(f"AIRLOCK_LOGIN_*: {exc}") from None
        return cls(
            allowed_origins=origins,
            session_idle_s=duration("AIRLOCK_SESSION_IDLE", 1800.0),
            session_max_s=duration("AIRLOCK_SESSION_MAX", 43200.0),
            max_body_bytes=body_limit,
            max_browser_sessions=number("AIRLOCK_MAX_BROWSER_SESSIONS", 1000),
            login=limits,
        )


# -- sessions -------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Session:
    opened: float
    seen: float


class SessionRegistry:
    """Track when each Gradio session token was issued and last used; end expired ones.

    Gradio keeps its tokens in ``App.tokens`` (token -> username) forever. The registry learns a
    token when the login response sets it, and removes it from Gradio's table when it expires or
    its owner signs out; a token Gradio knows but the registry does not is removed too.
    """

    def __init__(self, *, tokens: MutableMapping[str, str], idle_s: float, max_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tokens = tokens
        self.idle_s = idle_s
        self.max_s = max_s
        self.clock = clock
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def opened(self, token: str) -> None:
        """Record a token the login just issued."""
        now = self.clock()
        with self._lock:
            self._sessions[token] = _Session(opened=now, seen=now)

    def alive(self, token: str) -> bool:
        """Return whether a token is a live session (and mark it used); end it if it expired."""
        now = self.clock()
        with self._lock:
            session = self._sessions.get(token)
            if session is None or token not in self.tokens:
                self._end(token)
                return False
            if now - session.seen > self.idle_s or now - session.opened > self.max_s:
                self._end(token)
                return False
            session.seen = now
            return True

    def close(self, token: str) -> None:
        """End one session (sign-out)."""
        with self._lock:
            self._end(token)

    def sweep(self) -> int:
        """End every expired session; return how many ended."""
        now = self.clock()
        with self._lock:
            expired = [t for t, s in self._sessions.items()
                       if now - s.seen > self.idle_s or now - s.opened > self.max_s]
            expired += [t for t in list(self.tokens) if t not in self._sessions]
            for token in expired:
                self._end(token)
            return len(expired)

    def __len__(self) -> int:
        """Return the number of sessions tracked."""
        return len(self._sessions)

    def _end(self, token: str) -> None:
        self._sessions.pop(token, None)
        self.tokens.pop(token, None)


def reap_browser_state(holder: Any, *, idle_s: float, closed_s: float = CLOSED_TAB_TTL_S,
                       now: float | None = None) -> int:
    """Drop Gradio's per-tab state of tabs idle for ``idle_s`` (closed tabs: ``closed_s``).

    Gradio keeps each tab's copy of the app's component state (about 0.2 MB) until 10,000 newer
    tabs push it out; a closed tab's values are only emptied after an hour.

    Args:
        holder: Gradio's ``StateHolder``.
        idle_s: How long an open tab's state is kept without an event.
        closed_s: How long a closed tab's state is kept (it may reconnect).
        now: The time (epoch seconds; default: now).

    Returns:
        How many tabs' state was dropped.
    """
    now = time.time() if now is None else now
    with holder.lock:
        stale = []
        for session_id, state in list(holder.session_data.items()):
            last = holder.time_last_used.get(session_id)
            age = now - last.timestamp() if last is not None else float("inf")
            if age > (closed_s if getattr(state, "is_closed", False) else idle_s):
                stale.append(session_id)
        for session_id in stale:
            holder.session_data.pop(session_id, None)
            holder.time_last_used.pop(session_id, None)
    return len(stale)


# -- the middleware ---------------------------------------------------------------------------------
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_LOGOUT_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign out · airlock</title>
<style>body{{font-family:system-ui,sans-serif;margin:4em auto;max-width:28em}}
button{{font-size:1em;padding:.5em 1.2em}}</style></head><body>
<h1>Sign out of airlock?</h1>
<form method="post" action="{action}"><button type="submit" id="confirm-logout">Sign out</button></form>
<p><a href="{home}">Back to the app</a></p></body></html>"""

_CSRF_SCRIPT = """<meta name="airlock-csrf" content="{token}">
<script>(function(){{var t=document.querySelector('meta[name="airlock-csrf"]').content;
var f=window.fetch.bind(window);window.fetch=function(i,o){{o=o||{{}};
var m=(o.method||(i&&i.method)||'GET').toUpperCase();var u=new URL(i&&i.url?i.url:String(i),location.href);
if(m!=='GET'&&m!=='HEAD'&&u.origin===location.origin){{var h=new Headers(o.headers||(i&&i.headers)||{{}});
h.set('X-Airlock-CSRF',t);o.headers=h;}}return f(i,o);}};}})();</script>"""

# Gradio's login form shows "incorrect credentials" for a 400, reloads on a 200 and shows nothing
# for anything else: the login page gets this script, which shows why sign-in failed when the
# app answers 503 (its database does not answer) or cannot be reached at all.
_LOGIN_SCRIPT = """<script>(function(){var f=window.fetch.bind(window);
function box(){var e=document.getElementById('airlock-login-error');if(!e){e=document.createElement('div');
e.id='airlock-login-error';e.setAttribute('role','alert');e.style.cssText='position:fixed;top:16px;left:50%;'+
'transform:translateX(-50%);z-index:1000;max-width:560px;padding:12px 16px;border-radius:8px;'+
'background:#fdecea;color:#611a15;border:1px solid #f5c2c0;font:15px/1.4 system-ui,sans-serif';
document.body.appendChild(e);}return e;}
function show(d){box().textContent='Service unavailable: sign-in cannot be checked right now because the '+
'service cannot reach its database. Please try again in a minute.'+(d?' ('+d+')':'');}
function hide(){var e=document.getElementById('airlock-login-error');if(e){e.remove();}}
window.fetch=function(i,o){var p=f(i,o);var m=((o&&o.method)||(i&&i.method)||'GET').toUpperCase();
var u=new URL(i&&i.url?i.url:String(i),location.href);
if(m!=='POST'||!/\\/login\\/?$/.test(u.pathname)){return p;}
return p.then(function(r){if(r.status>=500){r.clone().json().then(function(b){
show(b&&typeof b.detail==='string'?b.detail:'');},function(){show('');});}else{hide();}return r;},
function(e){show('the app does not answer');throw e;});};})();</script>"""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _session_cookies(scope: Scope) -> dict[str, str]:
    """Return Gradio's session cookies of a request (name -> token).

    Gradio's cookie names may end in ``=`` (base64) and its tokens never contain one, so a pair
    splits at its last ``=``.
    """
    found: dict[str, str] = {}
    for key, value in scope.get("headers") or []:
        if key.lower() != b"cookie":
            continue
        for part in bytes(value).decode("latin-1").split(";"):
            name, sep, token = part.strip().rpartition("=")
            if sep and name.startswith(SESSION_COOKIE_PREFIX) and token:
                found[name] = token
    return found


_SAMESITE = re.compile(r";\s*samesite=[^;]*", re.IGNORECASE)


def _strict_cookie(value: str) -> str:
    """Return a Set-Cookie value with ``SameSite=Strict`` and ``HttpOnly`` for session cookies."""
    value = _SAMESITE.sub("", value) + "; SameSite=Strict"
    if value.split("=", 1)[0].strip().startswith(SESSION_COOKIE_PREFIX) and "httponly" not in value.lower():
        value += "; HttpOnly"
    return value


async def _respond(send: Send, status: int, body: bytes, *, content_type: bytes = b"application/json",
                   headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            *_SECURITY_HEADERS, *headers]})
    await send({"type": "http.response.body", "body": body})


def _route_path(scope: Scope) -> str:
    """Return the request's path inside the app: without the ``root_path`` it is mounted under."""
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path") or "")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root):] or "/"
    return path


def _detail(message: str) -> bytes:
    return json.dumps({"detail": message}).encode()


class WebSecurityMiddleware:
    """The ASGI middleware (see the module docstring); wrap the whole app with it."""

    def __init__(self, app: ASGIApp, *, settings: WebSecuritySettings, sessions: SessionRegistry,
                 state_holder: Any = None, csrf_key: bytes | None = None) -> None:
        self.app = app
        self.settings = settings
        self.sessions = sessions
        self.state_holder = state_holder
        self.csrf_key = csrf_key or secrets.token_bytes(32)
        self._allowed = frozenset(settings.allowed_origins)
        self._hosts = settings.allowed_hosts
        self._next_sweep = 0.0

    def csrf_token(self, session_token: str) -> str:
        """Return the CSRF token of a session (an HMAC: nothing to store, useless elsewhere)."""
        return hmac.new(self.csrf_key, session_token.encode(), hashlib.sha256).hexdigest()

    # -- checks ------------------------------------------------------------------------------------
    def _same_origin(self, scope: Scope) -> bool:
        origin = _header(scope, b"origin")
        if origin is not None:
            return origin.strip().rstrip("/").lower() in self._allowed
        referer = _header(scope, b"referer")
        if referer:
            return _origin(referer) in self._allowed
        site = _header(scope, b"sec-fetch-site")
        if site is not None:
            return site.strip().lower() in ("same-origin", "none")
        return True  # no browser sent this: it carries no victim's cookies

    def _is_browser(self, scope: Scope) -> bool:
        return any(_header(scope, h) is not None for h in (b"origin", b"referer", b"sec-fetch-site"))

    def _sweep(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_EVERY_S
        self.sessions.sweep()
        if self.state_holder is not None:
            reap_browser_state(self.state_holder, idle_s=self.settings.session_idle_s)

    # -- ASGI ----------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check one request, then pass it on with its response's headers fixed."""
        if scope["type"] == "websocket":
            if not self._same_origin(scope):
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self._sweep()
        method = str(scope.get("method", "GET")).upper()
        path = _route_path(scope)  # under a prefix (``airlock serve``'s /ui) the app's own path
        host = (_header(scope, b"host") or "").strip().lower()
        if host not in self._hosts:
            await _respond(send, 421, _detail(f"unknown Host {host!r}: add the app's address to "
                                              "AIRLOCK_ALLOWED_ORIGINS"))
            return
        origin = _header(scope, b"origin")
        foreign = origin is not None and origin.strip().rstrip("/").lower() not in self._allowed
        if method == "OPTIONS" and foreign:
            await _respond(send, 403, _detail("cross-origin requests are not allowed"))
            return
        if method not in _SAFE_METHODS and not self._same_origin(scope):
            await _respond(send, 403, _detail("cross-origin request refused: the app only accepts "
                                              "state-changing requests from its own pages"))
            return
        cookies = _session_cookies(scope)
        live = next((t for t in dict.fromkeys(cookies.values()) if self.sessions.alive(t)), None)

        if path.rstrip("/") == "/logout":
            await self._logout(scope, send, method, cookies)
            return
        if method not in _SAFE_METHODS and path.startswith("/gradio_api/"):
            if live is None:
                await _respond(send, 401, _detail("sign in first (or your session has expired)"))
                return
            if self._is_browser(scope):
                sent = _header(scope, CSRF_HEADER.encode()) or ""
                if not hmac.compare_digest(sent.encode(), self.csrf_token(live).encode()):
                    await _respond(send, 403, _detail("missing or wrong CSRF token: reload the page"))
                    return
        is_login = method == "POST" and path.rstrip("/") == "/login"
        page = method == "GET" and path in ("/", "")
        inject = live if page else None
        if page:  # the page gets a script below (its CSRF token, or the login page's outage notice):
            # ask the app for it uncompressed
            scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers") or []
                                          if bytes(k).lower() != b"accept-encoding"]}
        pending_body: list[bytes] = []
        start_message: Message | None = None

        async def wrapped_send(message: Message) -> None:
            nonlocal start_message
            if message["type"] == "http.response.start":
                headers = []
                for key, value in message.get("headers") or []:
                    name = bytes(key).lower()
                    if name.startswith(b"access-control-") or name in (
                            b"x-frame-options", b"content-security-policy"):
                        continue  # never grant CORS; ours are the only framing rules
                    if name == b"set-cookie":
                        text = _strict_cookie(bytes(value).decode("latin-1"))
                        if is_login and message.get("status") == 200:
                            self._learn(text)
                        value = text.encode("latin-1")
                    headers.append((bytes(key), bytes(value)))
                message["headers"] = [*headers, *_SECURITY_HEADERS]
                ctype = dict((k.lower(), v) for k, v in headers).get(b"content-type", b"")
                if page and ctype.startswith(b"text/html"):
                    start_message = message  # the page gets its script: hold it until the body
                    return
            elif message["type"] == "http.response.body" and start_message is not None:
                pending_body.append(bytes(message.get("body") or b""))
                if message.get("more_body"):
                    return
                body = b"".join(pending_body)
                script = _CSRF_SCRIPT.format(token=self.csrf_token(inject)) if inject is not None else _LOGIN_SCRIPT
                tag = script.encode()
                body = body.replace(b"<head>", b"<head>" + tag, 1)
                start_message["headers"] = [(k, v) for k, v in start_message["headers"]
                                            if k.lower() != b"content-length"]
                start_message["headers"].append((b"content-length", str(len(body)).encode()))
                await send(start_message)
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        token = _client_address.set((scope.get("client") or ("", 0))[0] or "")
        try:
            await self.app(scope, receive, wrapped_send)
        finally:
            _client_address.reset(token)

    def _learn(self, set_cookie: str) -> None:
        name, _, value = set_cookie.split(";", 1)[0].strip().rpartition("=")
        if name.startswith(SESSION_COOKIE_PREFIX) and value:
            self.sessions.opened(value)

    async def _logout(self, scope: Scope, send: Send, method: str, cookies: Mapping[str, str]) -> None:
        root = str(scope.get("root_path") or "")
        if method in ("GET", "HEAD"):
            page = _LOGOUT_PAGE.format(action=html.escape(root + "/logout"), home=html.escape(root + "/"))
            await _respond(send, 200, page.encode(), content_type=b"text/html; charset=utf-8",
                           headers=[(b"cache-control", b"no-store")])
            return
        if method != "POST":
            await _respond(send, 405, _detail("sign out with POST"), headers=[(b"allow", b"GET, POST")])
            return
        for token in cookies.values():
            self.sessions.close(token)  # this session only; the user's other sessions stay
        expired = [(b"set-cookie", f"{name}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict".encode())
                   for name in cookies]
        await _respond(send, 303, b"", content_type=b"text/plain",
                       headers=[(b"location", (root + "/").encode()), *expired])


# -- serving -------------------------------------------------------------------------------------------
def secure_gradio_app(blocks: Any, *, host: str, port: int, settings: WebSecuritySettings,
                      **gradio: Any) -> WebSecurityMiddleware:
    """Return Gradio Blocks as an ASGI app behind the body limit and :class:`WebSecurityMiddleware`.

    The Blocks are mounted on a FastAPI app (Gradio's supported way to add middleware) whose CORS
    policy allows no other origin, so Gradio adds none of its own. Served under a prefix (see
    :class:`PrefixDispatch`), the app sees it as its ``root_path``, as behind a proxy.

    Args:
        blocks: The Gradio Blocks (``.queue()`` already called).
        host: The address the server listens on.
        port: Its port.
        settings: The web-security settings.
        **gradio: Passed to ``gradio.mount_gradio_app`` (``auth``, ``theme``, ``css`` ...).
    """
    import gradio as gr
    from fastapi import FastAPI
    from fastapi.middleware.cors import CORSMiddleware
    from starlette.routing import Mount

    parent = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    parent.add_middleware(CORSMiddleware, allow_origins=[], allow_credentials=False)
    blocks.state_session_capacity = settings.max_browser_sessions
    gr.mount_gradio_app(parent, blocks, path="/", server_name=host, server_port=port, **gradio)
    gradio_app: Any = next(r.app for r in parent.routes if isinstance(r, Mount))
    sessions = SessionRegistry(tokens=gradio_app.tokens, idle_s=settings.session_idle_s,
                               max_s=settings.session_max_s)
    limited = BodyLimitMiddleware(parent, settings.max_body_bytes)
    return WebSecurityMiddleware(limited, settings=settings, sessions=sessions, state_holder=gradio_app.state_holder)


class PrefixDispatch:
    """Send requests under ``prefix`` to ``inner`` (with the prefix as their ``root_path``), the rest to ``outer``.

    ``airlock serve`` puts the secured Gradio app under ``/ui`` this way, so everything there passes
    :class:`WebSecurityMiddleware` while the API keeps its own middleware; the lifespan is the outer app's.
    """

    def __init__(self, *, outer: ASGIApp, inner: ASGIApp, prefix: str) -> None:
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError("prefix must start with / and not end with one")
        self.outer, self.inner, self.prefix = outer, inner, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch one connection by its path."""
        if scope["type"] in ("http", "websocket"):
            path = str(scope.get("path", ""))
            if path == self.prefix or path.startswith(self.prefix + "/"):
                root = str(scope.get("root_path") or "") + self.prefix
                await self.inner({**scope, "root_path": root}, receive, send)
                return
        await self.outer(scope, receive, send)


def serve(blocks: Any, *, host: str, port: int, settings: WebSecuritySettings, **gradio: Any) -> None:
    """Serve Gradio Blocks behind :class:`WebSecurityMiddleware` until interrupted (see :func:`secure_gradio_app`).

    Args:
        blocks: The Gradio Blocks (``.queue()`` already called).
        host: The address to listen on.
        port: The port.
        settings: The web-security settings.
        **gradio: Passed to ``gradio.mount_gradio_app`` (``auth``, ``theme``, ``css`` ...).
    """
    import uvicorn

    app = secure_gradio_app(blocks, host=host, port=port, settings=settings, **gradio)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", proxy_headers=False,
                            server_header=False, forwarded_allow_ips="")
    print(f"airlock: serving on http://{host}:{port} (origins: {', '.join(settings.allowed_origins)})",
          flush=True)
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        pass
