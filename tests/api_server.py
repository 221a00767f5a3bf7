"""A real ``airlock serve`` app on a free port (uvicorn in a thread), tokens and an SSE reader for tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import uvicorn

from graph.runtime import AirlockServices
from ui.api import ServeSettings
from ui.serve import build_server_app

SECRET = "test-secret-for-the-airlock-api-0123456789"


def token(sub: str, roles: list[str], *, secret: str = SECRET, exp_in: int = 300, aud: str = "airlock-api",
          iss: str = "airlock", **claims: Any) -> str:
    """Return a signed HS256 token."""
    now = int(time.time())
    body = {"sub": sub, "roles": roles, "iss": iss, "aud": aud, "iat": now, "exp": now + exp_in, **claims}
    return jwt.encode(body, secret, algorithm="HS256")


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def serve_process(database: str, port: int, *, log: Any = subprocess.PIPE, **env: str) -> subprocess.Popen[str]:
    """Start ``airlock serve --no-ui`` as a process on ``port`` over ``database`` (offline model).

    ``log`` takes its output (a file for a long-lived process: an unread pipe fills and blocks it).
    """
    from tests.conftest import ROOT

    environ = {**os.environ, "DATABASE_URL": database, "AIRLOCK_JWT_SECRET": SECRET,
               "AIRLOCK_MODEL_PROVIDER": "offline", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "serve", "--no-ui", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT, text=True,
    )


def wait_ready(process: subprocess.Popen[str], url: str) -> None:
    """Return once ``process`` answers ``/readyz`` with 200 (fail if it exits first)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"airlock serve exited ({process.returncode}): "
                                 f"{process.stdout.read() if process.stdout else 'see its log'}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)  # polling a starting process; the readiness probe is the synchronisation
    raise AssertionError("airlock serve did not become ready")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running server and its base URL."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread
    stop: threading.Event
    services: AirlockServices
    extra: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.stop.set()


def start_server(services: AirlockServices, settings: ServeSettings, *, accounts: Any = None) -> Server:
    """Serve the API for ``services`` on a free loopback port until ``close`` (/ui secured as on loopback)."""
    from ui.security import WebSecuritySettings

    port = free_port()
    web = WebSecuritySettings.from_env({}, host="127.0.0.1", port=port) if accounts is not None else None
    api, stop = build_server_app(services=services, settings=settings, accounts=accounts, web=web, port=port)
    config = uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return Server(url=url, server=server, thread=thread, stop=stop, services=services)


@dataclass
class Event:
    id: int
    event: str
    data: dict[str, Any]


def sse_events(response: httpx.Response, *, stop_after: int | None = None) -> Iterator[Event]:
    """Yield the SSE events of a streaming response (comments and pings skipped)."""
    current: dict[str, str] = {}
    count = 0
    for line in response.iter_lines():
        if line == "":
            if "data" in current and "event" in current:
                yield Event(id=int(current.get("id", "0")), event=current["event"], data=json.loads(current["data"]))
                count += 1
                if stop_after is not None and count >= stop_after:
                    return
            current = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        current[name] = current[name] + "\n" + value if name == "data" and name in current else value
