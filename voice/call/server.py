"""The call server: process-wide state shared by every call (config, worker pool, DB thread, batched
VAD, the voiceprint scoring service, observers, admission), and the door each call comes in by.

One :class:`CallServer` per process, built once by whoever starts the server; each connected robot gets
a :class:`~callvet.voice.call.session.CallSession` (a pipeline of processors) on it. The server is also
where the one process-wide setting lives: Python's GIL switch interval (``CALLVET_CALL_SWITCH_INTERVAL_S``,
set when the server starts and restored by :meth:`CallServer.close`), since the event loop must win the
GIL back from busy workers on every message; no session touches it.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from callvet.core.db import Database
from callvet.core.errors import CallvetError
from callvet.voice.asr import asr_grace_s
from callvet.voice.call.frames import ErrorFrame
from callvet.voice.call.observer import ObserverFactory, observer_factories
from callvet.voice.call.pipeline import CallConfig
from callvet.voice.call.processors import Clock, SystemClock
from callvet.voice.call.runner import CallSession, Transport
from callvet.voice.call.scoring import VoiceScoring
from callvet.voice.call.serializers import serializer_for
from callvet.voice.call.store import CallStore
from callvet.voice.call.vadbatch import VadHub

__all__ = ["CLOSE_INTERNAL", "CLOSE_NORMAL", "CLOSE_TRY_LATER", "CallServer", "Transport",
           "default_vad_factory"]

log = logging.getLogger("callvet.calls")

CLOSE_NORMAL = 1000
CLOSE_INTERNAL = 1011
CLOSE_TRY_LATER = 1013


def default_vad_factory(sample_rate: int, silence_ms: int) -> Any:
    from callvet.voice.vad import VadStream

    return VadStream(sample_rate=sample_rate, min_silence_ms=silence_ms)


class CallServer:
    """Process-wide state of the call server: config, pools, the store and the scoring service.

    ``scoring`` builds the (heavy, shared) :class:`VoiceScoring` on first use, off the event loop; when
    it fails (models not built, blacklist unavailable) calls still run, record and measure prosody,
    and the robot is told ``voiceprint_unavailable``.
    """

    def __init__(
        self,
        db: Database,
        *,
        cfg: CallConfig | None = None,
        scoring: Callable[[], VoiceScoring] | None = None,
        vad_factory: Callable[[int, int], Any] = default_vad_factory,
        observers: list[tuple[str, ObserverFactory]] | None = None,
        batch_vad: bool | None = None,
        admit: Callable[[str, dict[str, Any]], str | None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.cfg = cfg or CallConfig()
        #: The time source of every call's processors (a fake one in tests).
        self.clock: Clock = clock or SystemClock()
        #: Joins a starting stream to its case (issue 11): ``admit(call_id, customParameters)`` returns
        #: the case id, None for a stream that names no case, or raises CallvetError to refuse it.
        self.admit = admit
        self._saved_switch = sys.getswitchinterval()
        if self.cfg.switch_interval_s > 0:
            sys.setswitchinterval(self.cfg.switch_interval_s)
        use_hub = self.cfg.batch_vad if batch_vad is None else batch_vad
        self.store = CallStore(db)
        self.pool = ThreadPoolExecutor(max(1, self.cfg.workers), thread_name_prefix="call-cpu")
        self.db_pool = ThreadPoolExecutor(1, thread_name_prefix="call-db")
        self.vad_factory = vad_factory
        #: One batched Silero run for all calls (only with the stock VAD; a custom factory runs per call).
        self.vad_hub = (VadHub(self.pool, gather_s=self.cfg.gather_s, jobs=max(1, self.cfg.workers),
                               max_job_calls=16)
                        if use_hub and vad_factory is default_vad_factory else None)
        self._scoring_factory = scoring
        self._scoring: VoiceScoring | None = None
        self._scoring_error: CallvetError | None = None
        self._scoring_lock = threading.Lock()
        self._observers = observers
        self.asr_grace_s = asr_grace_s()
        self.active: dict[str, CallSession] = {}

    def observer_factories(self) -> list[tuple[str, ObserverFactory]]:
        return list(self._observers) if self._observers is not None else observer_factories()

    def add_observer(self, name: str, factory: ObserverFactory) -> None:
        """Watch every call started from now on (an adapter that starts after this server was built,
        such as the console's alarm feed); an observer of the same name is replaced."""
        mine = [(n, f) for n, f in self.observer_factories() if n != name]
        self._observers = [*mine, (name, factory)]

    def scoring(self) -> VoiceScoring:
        """The shared scoring service (built once; a failure is remembered and re-raised)."""
        if self._scoring is not None:
            return self._scoring
        with self._scoring_lock:
            if self._scoring is None:
                if self._scoring_factory is None:
                    raise CallvetError("no voiceprint scoring configured", code="voiceprint_unavailable")
                try:
                    self._scoring = self._scoring_factory()
                except CallvetError as exc:
                    raise CallvetError(exc.message, code="voiceprint_unavailable") from exc
                except Exception as exc:
                    log.exception("voiceprint scoring could not be built")
                    raise CallvetError(f"voiceprint scoring could not be built: {exc}",
                                       code="voiceprint_unavailable") from exc
            return self._scoring

    async def handle(self, transport: Transport, protocol: str, actor: str, *,
                     require_case: bool = False) -> CallSession | None:
        """Run one call to its end; beyond ``max_calls`` concurrent calls the robot is turned away
        (``callvet.error`` ``capacity``, close 1013 try again later) before anything is recorded."""
        if len(self.active) >= self.cfg.max_calls:
            try:
                text = serializer_for(protocol).encode(ErrorFrame(
                    "capacity", f"the call server is at its limit of {self.cfg.max_calls} calls",
                    CLOSE_TRY_LATER))
                assert text is not None
                await transport.send_text(text)
                await transport.close(CLOSE_TRY_LATER, "capacity")
            except Exception:
                log.info("a call turned away for capacity had already gone")
            return None
        session = CallSession(self, transport, protocol, actor, require_case=require_case)
        key = session.call_id  # a resumed call takes its record's id during the run
        self.active[key] = session
        try:
            await session.run()
        finally:
            self.active.pop(key, None)
        return session

    async def hand_over_all(self, timeout_s: float = 15.0) -> int:
        """Graceful drain (issue 17): every live call is handed over (the robot is told to resume on
        another replica, the record stays open with a last checkpoint); returns how many were, once
        their sessions have finished (or ``timeout_s`` passed)."""
        import asyncio

        n = sum([await s.hand_over() for s in list(self.active.values())])
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while self.active and loop.time() < end:
            await asyncio.sleep(0.05)
        return n

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.db_pool.shutdown(wait=True)
        sys.setswitchinterval(self._saved_switch)
