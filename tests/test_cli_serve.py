"""``callvet serve``'s workflow worker dies with its server: on SIGTERM and on ``kill -9``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from serverproc import free_port


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _wait(cond: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def _start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "CALLVET_DATA_DIR": str(tmp_path / "var")}
    env.pop("CALLVET_DATABASE_URL", None)
    server = subprocess.Popen([sys.executable, "-m", "callvet", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    assert _wait(up, 120), "server did not come up"
    workers = [c for c in _children(server.pid) if "worker" in Path(f"/proc/{c}/cmdline").read_text()]
    assert len(workers) == 1
    return server, workers[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_worker_dies_with_its_server(tmp_path: Path, sig: signal.Signals) -> None:
    server, worker = _start(tmp_path)
    try:
        assert _alive(worker)
        server.send_signal(sig)
        server.wait(timeout=60)
        assert _wait(lambda: not _alive(worker), 30), f"worker {worker} outlived its server ({sig.name})"
    finally:
        for pid in (server.pid, worker):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        server.wait(timeout=10)
