"""Run the airlock Gradio app in a subprocess for the browser tests.

``python -m tests.browser_server --port N`` serves the app on 127.0.0.1:N against the database
in ``DATABASE_URL`` with the offline planner and the demo accounts. :class:`AppServer` starts it
from a test, waits until the login page answers, restarts it (same port, same database) and
stops it.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
__all__ = ["AppServer", "free_port", "main"]


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AppServer:
    """The app in a subprocess on a free port against one database."""

    def __init__(self, database_url: str, *, data_dir: Path, timeout: float = 60.0,
                 env: dict[str, str] | None = None) -> None:
        self.database_url = database_url
        self.extra_env = dict(env or {})
        self.data_dir = data_dir
        self.timeout = timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "GRADIO_"))}
        env.update({
            "DATABASE_URL": self.database_url,
            "AIRLOCK_MODEL_PROVIDER": "offline",
            "AIRLOCK_DATA_DIR": str(self.data_dir),  # the vault key of this test run
            "AIRLOCK_AUDIT_KEY": os.environ["AIRLOCK_AUDIT_KEY"],  # required with DATABASE_URL (conftest's)
            "GRADIO_ANALYTICS_ENABLED": "False",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        return env

    def log(self, chars: int = 4000) -> str:
        """Return the end of the server's output."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def start(self) -> AppServer:
        """Start the server and wait until it answers."""
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tests.browser_server", "--port", str(self.port)],
                cwd=ROOT, env=self._env(), stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the app exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the app did not start within {self.timeout} s:\n{self.log()}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server (Ctrl-C first, so it closes its database pool)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> AppServer:
        """Stop and start again on the same port and database (state must come from Postgres)."""
        self.stop()
        return self.start()

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Serve the app on 127.0.0.1 (the subprocess side of :class:`AppServer`)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell may have ignored it
    from graph.runtime import AirlockSettings
    from ui.app import launch

    return launch(host="127.0.0.1", port=args.port, settings=AirlockSettings.from_env())


if __name__ == "__main__":
    sys.exit(main())
