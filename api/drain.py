"""Graceful drain on SIGTERM: leave the load balancer first, then finish what is running, then stop.

A replica that simply stopped on SIGTERM would refuse the requests its load balancer still sends until
the next failed health check, and cut its live calls. :class:`DrainingServer` (the uvicorn server of
``callvet serve``) instead, on the first SIGTERM:

1. marks every app of the process draining: ``/readyz`` answers 503 ``draining`` at once while requests
   are still served, so HAProxy's check takes the replica out of rotation (``drain_grace_s``);
2. after that grace, and once no call is live in this process (or ``drain_timeout_s`` has passed), lets
   uvicorn shut down: it stops accepting connections and waits for the requests in flight;
3. the app's shutdown then closes the services, which writes the decisions still queued for group commit.

A second SIGTERM, or SIGINT, stops at once (uvicorn's own handling).

:func:`server_options` names the event loop and HTTP parser: uvloop and httptools when installed (issue
17: the HTTP layer cost more CPU than a trivial request's handler), else asyncio and h11, so a host
without the C extensions still serves. The choice is explicit rather than uvicorn's ``auto`` so that the
process logs which one it runs and a test can hold it.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import signal
import threading
import time
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

__all__ = ["Drain", "DrainingServer", "draining_apps", "run", "server_options"]

log = logging.getLogger("callvet.drain")


class Drain:
    """One app's drain state: whether it is draining and how many calls it still holds."""

    def __init__(self, live_calls: Callable[[], int] = lambda: 0) -> None:
        self._since: float | None = None
        self.live_calls = live_calls
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self._since is not None

    def start(self) -> None:
        with self._lock:
            if self._since is None:
                self._since = time.monotonic()


_apps: weakref.WeakSet[Drain] = weakref.WeakSet()


def draining_apps() -> list[Drain]:
    """The drain state of every app built in this process."""
    return list(_apps)


def register(drain: Drain) -> Drain:
    _apps.add(drain)
    return drain


class DrainingServer(uvicorn.Server):
    """uvicorn's server with the drain above in front of its own graceful shutdown."""

    def __init__(self, config: uvicorn.Config, *, grace_s: float, timeout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config)
        self.grace_s = grace_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._drain_started: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self._drain_started is not None or self.should_exit:
            super().handle_exit(sig, frame)
            return
        self._drain_started = self.clock()
        for d in draining_apps():
            d.start()
        log.info("SIGTERM: draining (readyz 503 for %.1f s, then up to %.0f s for live calls)",
                 self.grace_s, self.timeout_s)

    async def startup(self, sockets: list[Any] | None = None) -> None:
        """uvicorn's startup, then the objects built so far (app, routes, imports) move out of the cyclic
        collector's generations: they live as long as the process, and every full collection under load
        would walk them again."""
        await super().startup(sockets)
        gc.collect()
        gc.freeze()

    def _live(self) -> int:
        return sum(d.live_calls() for d in draining_apps())

    async def on_tick(self, counter: int) -> bool:
        if self._drain_started is not None and not self.should_exit:
            waited = self.clock() - self._drain_started
            live = self._live() if waited >= self.grace_s else -1
            if live == 0 or waited >= self.grace_s + self.timeout_s:
                if live > 0:
                    log.warning("drain timeout: stopping with %d live call(s)", live)
                self.should_exit = True
        return await super().on_tick(counter)


def server_options() -> dict[str, str]:
    """uvicorn's ``loop`` and ``http``: the C implementations when importable, the pure-Python ones else."""
    def present(name: str) -> bool:
        return importlib.util.find_spec(name) is not None

    return {"loop": "uvloop" if present("uvloop") else "asyncio",
            "http": "httptools" if present("httptools") else "h11"}


def run(host: str, port: int, *, log_level: str, log_config: dict[str, object] | None,
        workers: int = 1) -> None:
    """Serve ``callvet.api.app:create_app``. One worker: the draining server. Several: uvicorn's
    supervisor, which stops its workers without the drain (run one process per replica instead)."""
    from callvet.core.settings import get_settings

    options = server_options()
    kwargs: dict[str, Any] = dict(factory=True, host=host, port=port, log_level=log_level,
                                  ws_max_size=1 << 20, ws_per_message_deflate=False, log_config=log_config,
                                  **options)
    if workers > 1:
        uvicorn.run("callvet.api.app:create_app", workers=workers, **kwargs)
        return
    settings = get_settings()
    config = uvicorn.Config("callvet.api.app:create_app", **kwargs)  # configures logging
    log.info("serving with loop=%s http=%s", options["loop"], options["http"])
    DrainingServer(config, grace_s=settings.drain_grace_s, timeout_s=settings.drain_timeout_s).run()
