"""``callvet serve`` runs on uvloop and httptools when they are installed (issue 17's hot path) and falls
back to asyncio and h11 when they are not; both serve HTTP and WebSockets."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from callvet.api import drain
from serverproc import ServerProcess


def test_the_c_implementations_are_picked_when_present() -> None:
    assert all(importlib.util.find_spec(m) is not None for m in ("uvloop", "httptools"))
    assert drain.server_options() == {"loop": "uvloop", "http": "httptools"}


@pytest.mark.parametrize("missing", [{"uvloop"}, {"httptools"}, {"uvloop", "httptools"}])
def test_a_missing_extension_falls_back(missing: set[str], monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name in missing else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    opts = drain.server_options()
    assert opts["loop"] == ("asyncio" if "uvloop" in missing else "uvloop")
    assert opts["http"] == ("h11" if "httptools" in missing else "httptools")


_WS_PROBE = """
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1]) as ws:
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 30)
        except websockets.ConnectionClosed as exc:
            print(exc.rcvd.code if exc.rcvd else "none")
asyncio.run(main())
"""


class _WithoutExtensions(ServerProcess):
    """``callvet serve`` in an interpreter where uvloop and httptools cannot be imported."""

    def start(self) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        code = ("import runpy, sys; sys.modules['uvloop'] = None; sys.modules['httptools'] = None; "
                "sys.argv = ['callvet', *sys.argv[1:]]; runpy.run_module('callvet', run_name='__main__')")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, "serve", "--no-workflow-worker", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "info"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self


@pytest.mark.parametrize(("kind", "expected"), [(ServerProcess, "loop=uvloop http=httptools"),
                                                (_WithoutExtensions, "loop=asyncio http=h11")])
def test_the_server_says_what_it_runs_and_serves_http_and_websockets(
        kind: type[ServerProcess], expected: str, tmp_path: Path) -> None:
    srv = kind(tmp_path / "var").start()
    try:
        srv.wait_ready()
        lines = [json.loads(x) for x in srv.log_path.read_text().splitlines() if x.startswith("{")]
        assert any(expected in x.get("msg", "") for x in lines), srv.log_tail()
        # a call stream with a key that does not exist: the WebSocket is accepted, then closed by the
        # application with its policy-violation code (so the upgrade went through this HTTP parser)
        url = f"ws://127.0.0.1:{srv.port}/v1/calls/stream?token=cv_000000000000_not-a-key"
        out = subprocess.run([sys.executable, "-c", _WS_PROBE, url],
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "1008", out.stdout + out.stderr
    finally:
        srv.stop()
