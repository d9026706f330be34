"""Live alarms: a call observer feeds an in-process hub, analysts' browsers read it as Server-Sent Events.

The console subscribes to calls through the call server's public observer seam
(:func:`callvet.voice.call.observer.register_observer`): its observer turns each verdict that reaches the
alarm or review tier into a small alarm event (call, application, best match, score, spoof flag) and hands
it to the :class:`AlarmHub`. Hooks run on the call server's loop and must be quick, so publishing is a
non-blocking put onto each subscriber's bounded queue (a slow browser loses alarms, never the call; the
page then says so and the alarm list on reload comes from the call records).

The hub is per process: with several uvicorn workers a browser hears the calls of the worker it is
connected to (docs/console.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from callvet.voice.call.observer import BaseObserver, CallInfo, ObserverResult

__all__ = ["OBSERVER_NAME", "AlarmHub", "AlarmObserver", "alarm_event", "poll_stream", "sse_stream"]

OBSERVER_NAME = "console-alarms"
HEARTBEAT_S = 15.0


def alarm_event(call: CallInfo, verdict: dict[str, Any]) -> dict[str, Any] | None:
    """The alarm a verdict raises (alarm or review tier), or None. No audio, no voiceprint."""
    tier = "alarm" if verdict.get("alarm") else "review" if verdict.get("review") else None
    if tier is None:
        return None
    matches = verdict.get("matches") or []
    best = matches[0] if matches else {}
    spoof = verdict.get("spoof") or {}
    return {
        "call_id": call.call_id, "application_id": call.application_id, "tier": tier,
        "identity_id": best.get("identity_id"), "label": best.get("label"), "score": best.get("score"),
        "threshold": verdict.get("threshold"), "net_speech_s": verdict.get("net_speech_s"),
        "spoof_flag": spoof.get("flag"), "spoof_kind": spoof.get("kind"), "at": time.time(),
    }


class AlarmHub:
    """Fan-out of alarm events to subscribers' queues; keeps the last ``keep`` for late joiners."""

    def __init__(self, keep: int = 50, queue_size: int = 200) -> None:
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self.queue_size = queue_size
        self._subs: dict[asyncio.Queue[dict[str, Any]], asyncio.AbstractEventLoop] = {}
        self._lock = threading.Lock()
        self.dropped = 0

    def publish(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.recent.append(event)
            subs = list(self._subs.items())
        for queue, loop in subs:
            with contextlib.suppress(RuntimeError):  # the subscriber's loop has closed
                loop.call_soon_threadsafe(self._offer, queue, event)

    def _offer(self, queue: asyncio.Queue[dict[str, Any]], event: dict[str, Any]) -> None:
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.queue_size)
        with self._lock:
            self._subs[queue] = asyncio.get_running_loop()
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        with self._lock:
            self._subs.pop(queue, None)

    @property
    def subscribers(self) -> int:
        return len(self._subs)


class AlarmObserver(BaseObserver):
    """Per call: publishes each alarm- or review-tier verdict; the call itself is never touched."""

    def __init__(self, hub: AlarmHub) -> None:
        self.hub = hub

    def on_verdict(self, call: CallInfo, verdict: dict[str, Any]) -> ObserverResult:
        event = alarm_event(call, verdict)
        if event is not None:
            self.hub.publish(event)
        return None


def _frame(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def sse_stream(hub: AlarmHub, still_signed_in: Any, heartbeat_s: float = HEARTBEAT_S
                     ) -> AsyncIterator[bytes]:
    """``hello`` with the recent alarms, then one ``alarm`` frame per event; a comment line every
    ``heartbeat_s`` keeps proxies from closing the stream, and re-checks the session (a signed-out or
    idle-expired session ends the stream with ``bye``)."""
    queue = hub.subscribe()
    try:
        yield b"retry: 3000\n\n" + _frame("hello", {"recent": list(hub.recent)})
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=heartbeat_s)
            except TimeoutError:
                if not await still_signed_in():
                    yield _frame("bye", {"reason": "session_ended"})
                    return
                yield b": keep-alive\n\n"
                continue
            yield _frame("alarm", event)
    finally:
        hub.unsubscribe(queue)


async def poll_stream(fetch: Any, still_signed_in: Any, interval_s: float = 3.0,
                      heartbeat_s: float = HEARTBEAT_S) -> AsyncIterator[bytes]:
    """A ``snapshot`` frame now and whenever ``await fetch()`` returns something different (checked
    every ``interval_s``): for state that lives only in the database (the task inbox, written by any
    worker or the workflow worker), where there is no in-process event to wait on. Ends with ``bye``
    when the session ends."""
    last: Any = None
    quiet = 0.0
    yield b"retry: 3000\n\n"
    while True:
        if not await still_signed_in():
            yield _frame("bye", {"reason": "session_ended"})
            return
        snapshot = await fetch()
        if snapshot != last:
            last = snapshot
            quiet = 0.0
            yield _frame("snapshot", snapshot)
        elif quiet >= heartbeat_s:
            quiet = 0.0
            yield b": keep-alive\n\n"
        await asyncio.sleep(interval_s)
        quiet += interval_s
