"""Real ``callvet serve`` processes for tests: start on a free port, wait until ready, signal, reap."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ServerProcess", "free_port", "subprocess_db_url", "wait_for"]


def subprocess_db_url(db: Any) -> str:
    """The test database's URL for a server process; on PostgreSQL with the per-test schema as the
    search path (the ``db`` fixture's schema is set per connection, which a URL must carry)."""
    from sqlalchemy import text

    if db.dialect != "postgresql":
        return str(db.url)
    with db.connect() as conn:
        schema = conn.execute(text("SHOW search_path")).scalar()
    return f"{db.url}{'&' if '?' in db.url else '?'}options=-csearch_path%3D{schema}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Any, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return False


class ServerProcess:
    """``callvet serve`` (no workflow worker) with ``env`` on top of this environment; its log in a file."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, port: int | None = None,
                 log: Path | None = None) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self.env = {**os.environ, "CALLVET_DATA_DIR": str(data_dir), "CALLVET_LOG_FORMAT": "json",
                    **(env or {})}
        self.log_path = log or data_dir / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "callvet", "serve", "--no-workflow-worker", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "info"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 120) -> None:
        assert wait_for(lambda: self.ready() or not self.alive(), timeout, 0.2) and self.alive(), \
            f"server on {self.port} did not become ready: {self.log_tail()}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Kill this process if it still runs (test teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""
