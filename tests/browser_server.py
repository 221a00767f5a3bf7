"""Run the airlock Gradio app in a subprocess for the browser tests.

``python -m tests.browser_server --port N`` serves the app on 127.0.0.1:N against the database
in ``DATABASE_URL`` with the offline planner and the demo accounts. :func:`serve` starts it from
a test, waits until the login page answers, and stops it afterwards.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
__all__ = ["free_port", "main", "serve"]


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:]


@contextmanager
def serve(database_url: str, *, data_dir: Path, timeout: float = 60.0) -> Iterator[str]:
    """Start the app in a subprocess against ``database_url``; yield its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "GRADIO_"))}
    env.update({
        "DATABASE_URL": database_url,
        "AIRLOCK_MODEL_PROVIDER": "offline",
        "AIRLOCK_DATA_DIR": str(data_dir),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
    })
    log_path = data_dir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.browser_server", "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the app exited early:\n{_tail(log_path)}")
                try:
                    if httpx.get(url + "/", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the app did not start:\n{_tail(log_path)}")
                time.sleep(0.2)
            yield url
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Serve the app on 127.0.0.1 (the subprocess side of :func:`serve`)."""
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
