"""Graceful drain on SIGTERM: leave the load balancer first, then finish what is running, then stop.

A replica that simply stopped on SIGTERM would refuse the requests its load balancer still sends until
the next failed health check, and cut its live calls. :class:`DrainingServer` (the uvicorn server of
``callvet serve``) instead, on the first SIGTERM:

1. marks every app of the process draining: ``/readyz`` answers 503 ``draining`` at once while requests
   are still served, so HAProxy's check takes the replica out of rotation (``drain_grace_s``);
2. after that grace, hands every live call over (``drain_calls`` ``hand_over``, the default:
   :meth:`~callvet.voice.call.server.CallServer.hand_over_all`; the robot gets ``handed_over`` and
   reconnects with ``resume`` through the balancer to another replica, the call record stays open with
   a last checkpoint), or with ``wait`` lets the calls end on their own;
3. once no call is live in this process (or ``drain_timeout_s`` has passed), lets uvicorn shut down: it
   stops accepting connections and waits for the requests in flight;
4. the app's shutdown then closes the services, which writes the decisions still queued for group commit.

Calls are handed over only after the grace, when the balancer no longer sends this replica anything, so
the robot's reconnection cannot land here again.

A second SIGTERM, or SIGINT, stops at once (uvicorn's own handling).

:func:`server_options` names the event loop and HTTP parser: uvloop and httptools when installed (issue
17: the HTTP layer cost more CPU than a trivial request's handler), else asyncio and h11, so a host
without the C extensions still serves. The choice is explicit rather than uvicorn's ``auto`` so that the
process logs which one it runs and a test can hold it.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import signal
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

import uvicorn

__all__ = ["Drain", "DrainingServer", "draining_apps", "run", "server_options"]

log = logging.getLogger("callvet.drain")


class Drain:
    """One app's drain state: whether it is draining, how many calls it still holds, and how to hand
    them over (``hand_over`` returns how many were; None: the app has no call server)."""

    def __init__(self, live_calls: Callable[[], int] = lambda: 0,
                 hand_over: Callable[[], Awaitable[int]] | None = None) -> None:
        self._since: float | None = None
        self.live_calls = live_calls
        self.hand_over = hand_over
        #: Calls handed over so far (shown by /readyz while draining).
        self.handed_over = 0
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
                 hand_over: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config)
        self.grace_s = grace_s
        self.timeout_s = timeout_s
        self.hand_over = hand_over
        self.clock = clock
        self._drain_started: float | None = None
        self._handing: asyncio.Task[int] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self._drain_started is not None or self.should_exit:
            super().handle_exit(sig, frame)
            return
        self._drain_started = self.clock()
        for d in draining_apps():
            d.start()
        log.info("SIGTERM: draining (readyz 503 for %.1f s, then %s live calls, up to %.0f s)",
                 self.grace_s, "hand over" if self.hand_over else "wait for", self.timeout_s)

    async def startup(self, sockets: list[Any] | None = None) -> None:
        """uvicorn's startup, then the objects built so far (app, routes, imports) move out of the cyclic
        collector's generations: they live as long as the process, and every full collection under load
        would walk them again."""
        await super().startup(sockets)
        gc.collect()
        gc.freeze()

    def _live(self) -> int:
        return sum(d.live_calls() for d in draining_apps())

    async def _hand_over_all(self) -> int:
        n = 0
        for d in draining_apps():
            if d.hand_over is not None:
                got = await d.hand_over()
                d.handed_over += got
                n += got
        log.info("drain: %d live call(s) handed over", n)
        return n

    async def on_tick(self, counter: int) -> bool:
        if self._drain_started is not None and not self.should_exit:
            waited = self.clock() - self._drain_started
            live = self._live() if waited >= self.grace_s else -1
            # again while calls remain: one that connected, or had not started, after the last round
            if live > 0 and self.hand_over and (self._handing is None or self._handing.done()):
                self._handing = asyncio.get_running_loop().create_task(self._hand_over_all())
            handing = self._handing is not None and not self._handing.done()
            if (live == 0 and not handing) or waited >= self.grace_s + self.timeout_s:
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
    DrainingServer(config, grace_s=settings.drain_grace_s, timeout_s=settings.drain_timeout_s,
                   hand_over=settings.drain_calls == "hand_over").run()
