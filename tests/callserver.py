"""Call-test plumbing: a real uvicorn server in a background thread (loopback, free port, tmp data)
and an in-memory transport for driving a ``CallServer`` directly."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

__all__ = ["QueueTransport", "ServerThread"]


class ServerThread:
    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", ws="websockets-sansio", lifespan="on",
                                ws_max_size=1 << 20)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


class QueueTransport:
    """An in-memory call transport (the call server's mock transport): tests push frames into
    ``inbox`` and read the JSON events the server sent from ``sent``."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    async def receive(self) -> str | bytes | None:
        return await self.inbox.get()

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.sent if e.get("event") == name]
