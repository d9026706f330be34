"""The composition root: every service of a callvet process, built once from Settings.

The API (``app.state.ctx``), the CLI and the workflow worker all get their services here and nowhere
else: no route module, command or handler builds a voice engine, a blacklist or a runtime of its own,
so there is exactly one of each per process and the wiring between them (which engine the blacklist
searches with, which observers the call server runs, which decision engine the workflow decides with)
is written down in one place.

Services are built on first use, not at start-up: the API starts fast and a part whose model is not
built fails only the requests that need it (a ``CallvetError`` such as ``Unavailable`` -> 503). A build
that raises is not remembered, so a model built later is picked up by the next request.

Tests replace a service before its first use with :meth:`Services.override` (or the older
``service(name, factory)``): the override is what every other service is then wired to.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from callvet.cases.observer import OBSERVER_NAME as CASES_OBSERVER
from callvet.cases.observer import case_observer_factory
from callvet.cases.service import CaseService
from callvet.core.db import Database
from callvet.core.errors import CallvetError, InvalidInput, Unavailable
from callvet.core.outbox import Publisher, Relay
from callvet.core.outbox_kafka import KafkaPublisher
from callvet.core.outbox_nats import NatsPublisher
from callvet.core.settings import Settings, get_settings
from callvet.decision import DecisionEngine
from callvet.forms.service import FormReader
from callvet.portrait.links import enrich
from callvet.portrait.service import default_bank
from callvet.questionnaire.call_adapter import OBSERVER_NAME as INTERVIEW_OBSERVER
from callvet.questionnaire.call_adapter import interview_observer_factory
from callvet.questionnaire.service import InterviewService
from callvet.voice.blacklist import Blacklist
from callvet.voice.call.observer import ObserverFactory
from callvet.voice.call.scoring import VoiceScoring
from callvet.voice.call.session import CallServer
from callvet.voice.callprints import CallPrintRecords, CallPrintStore
from callvet.voice.engine import VoiceEngine
from callvet.voice.spoof import load_detector
from callvet.workflow.engine import WorkflowRuntime
from callvet.workflow.handlers import Decider, engine_decider

__all__ = ["CASE_STREAM_URL", "Services", "open_services"]

T = TypeVar("T")

#: Where robots stream a case's call (the token-only Twilio endpoint of ``api/routes/cases.py``).
CASE_STREAM_URL = "/v1/cases/stream"


def _on(name: str) -> bool:
    """An ``on by default`` switch from the environment (``NAME=0`` turns it off)."""
    return os.environ.get(name, "1") != "0"


class Services:
    """The typed container. Each property is one service, built once (thread-safe) on first use."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._built: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._adapter_observers: list[tuple[str, ObserverFactory]] = []

    # ---- the cache ---------------------------------------------------------------------------------
    def _get(self, name: str, build: Callable[[], T]) -> T:
        svc = self._built.get(name)
        if svc is None:
            with self._lock:
                svc = self._built.get(name)
                if svc is None:
                    svc = build()
                    self._built[name] = svc
        return svc  # type: ignore[no-any-return]

    def override(self, name: str, svc: Any) -> None:
        """Use ``svc`` as the service ``name`` (tests: a fake engine, an engine on a small model)."""
        with self._lock:
            self._built[name] = svc

    def service(self, name: str, factory: Callable[[Services], T]) -> T:
        """The service ``name``, built by ``factory(self)`` if it is not built yet (kept for callers
        that seed a service before first use; new code uses the typed properties)."""
        return self._get(name, lambda: factory(self))

    def peek(self, name: str) -> Any:
        """The service ``name`` if it has been built, else None (never builds: for metrics)."""
        return self._built.get(name)

    def close(self) -> None:
        for svc in list(self._built.values()):
            closer = getattr(svc, "close", None)
            if callable(closer):
                closer()
        self._built.clear()
        self.db.dispose()

    # ---- voice -------------------------------------------------------------------------------------
    @property
    def voice(self) -> VoiceEngine:
        """The voice engine (VAD, embedder), shared by the blacklist, call prints and calls."""
        return self._get("voice", lambda: VoiceEngine.from_settings(self.settings))

    @property
    def blacklist(self) -> Blacklist:
        return self._get("blacklist", lambda: Blacklist.from_settings(self.settings, self.db, self.voice))

    @property
    def callprints(self) -> CallPrintStore:
        """Call prints (voice reuse across applicants), searched with :attr:`voice`."""
        return self._get("callprints",
                         lambda: CallPrintStore.from_settings(self.settings, self.db, self.voice))

    @property
    def callprint_records(self) -> CallPrintRecords:
        """Call-print rows without the engine (reads, deletion, purge)."""
        return self._get("callprint_records", lambda: CallPrintRecords(self.db))

    @property
    def spoof(self) -> Any:
        """The spoof countermeasure; raises ``Unavailable`` when AASIST is not built (not cached)."""
        return self._get("spoof", lambda: load_detector(self.settings.models_dir))

    def call_spoof(self) -> Any:
        """The countermeasure for calls, or None when it cannot be built or ``Settings.spoof`` is off
        (``CALLVET_SPOOF=0``; calls then carry ``spoof.error``; the voiceprint still runs)."""
        if not self.settings.spoof:
            return None
        try:
            return self.spoof
        except CallvetError:
            return None

    def scoring(self) -> VoiceScoring:
        """What a call's voiceprint is scored with (built by the call server off its event loop)."""
        return VoiceScoring(self.voice, self.blacklist, callprints=self.callprints, spoof=self.call_spoof())

    def call_observers(self) -> list[tuple[str, ObserverFactory]]:
        """The parts that watch live calls, in order: the interview first, then the case (which reads
        what the interview recorded when the call stops)."""
        return [
            (INTERVIEW_OBSERVER, interview_observer_factory(lambda: self.interviews)),
            (CASES_OBSERVER, case_observer_factory(lambda: self.cases)),
            *self._adapter_observers,
        ]

    def add_call_observer(self, name: str, factory: ObserverFactory) -> None:
        """A watcher of live calls that belongs to an adapter above this layer (the console's alarm
        feed), given at start-up; if the call server is already built (a test gave its own), it is
        added to that server for the calls started from now on."""
        with self._lock:
            self._adapter_observers = [(n, f) for n, f in self._adapter_observers if n != name]
            self._adapter_observers.append((name, factory))
            built = self._built.get("calls")
        if built is not None:
            built.add_observer(name, factory)

    @property
    def calls(self) -> CallServer:
        """The call server (one worker pool for all calls) with its observers and case admission."""
        return self._get("calls", lambda: CallServer(
            self.db, scoring=self.scoring, observers=self.call_observers(),
            admit=lambda call_id, params: self.cases.admit_stream(call_id, params),
        ))

    # ---- questionnaire, decision, workflow, cases --------------------------------------------------
    @property
    def portrait_bank(self) -> Path:
        """The bank the portrait serves: ``CALLVET_PORTRAIT_BANK_DIR`` or ``data_dir/portrait``."""
        return default_bank(self.settings)

    def enrich_one(self, application: Any) -> Any:
        """``application`` with empty facts filled from the bank's books (the portrait's links)."""
        return enrich(self.portrait_bank, [application])[0][0]

    @property
    def interviews(self) -> InterviewService:
        """Interviews (sentence encoder loaded once, when built)."""
        return self._get("questionnaire", lambda: InterviewService(
            self.db, models_dir=self.settings.models_dir, enrich=self.enrich_one))

    @property
    def decision(self) -> DecisionEngine:
        """The decision engine (model session and compiled policies built once)."""
        return self._get("decision", lambda: DecisionEngine.from_settings(self.settings, self.db))

    def decide(self, application: dict[str, Any], investigation: dict[str, Any] | None,
               actor: str) -> dict[str, Any]:
        """The workflow's decider: the same :attr:`decision` engine as ``/v1/decisions``; an engine
        that cannot be built is ``decision_unavailable`` (503), not a failed instance."""
        try:
            eng = self.decision
        except CallvetError:
            raise
        except Exception as exc:
            raise Unavailable(f"decision engine unavailable: {exc}", code="decision_unavailable") from None
        return engine_decider(eng)(application, investigation, actor)

    def workflow_runtime(self, decide: Decider | None = None) -> WorkflowRuntime:
        """A runtime deciding with ``decide`` (default :meth:`decide`), ready to run; a reviewer's
        completion that ends a case's process moves the case on in the same transaction."""
        rt = WorkflowRuntime(self.db, settings=self.settings, decide=decide or self.decide)
        rt.add_finish_hook(self.cases.workflow_finished)
        rt.ensure_ready()
        return rt

    @property
    def workflow(self) -> WorkflowRuntime:
        return self._get("workflow", self.workflow_runtime)

    @property
    def cases(self) -> CaseService:
        """Cases, starting workflows on :attr:`workflow`; ``CALLVET_CASES_INTERVIEWS=0`` runs them
        without interviews."""
        interviews = (lambda: self.interviews) if _on("CALLVET_CASES_INTERVIEWS") else None
        return self._get("cases", lambda: CaseService(
            self.db, lambda: self.workflow, interviews, stream_url=CASE_STREAM_URL))

    # ---- events for the rest of the bank (issue 17) --------------------------------------------------
    def outbox_publisher(self) -> Publisher:
        """The broker the outbox relay publishes to (``CALLVET_OUTBOX_BROKER``; docs/events.md)."""
        s = self.settings
        if s.outbox_broker == "nats":
            return NatsPublisher(s.nats_url, stream=s.nats_stream, subject_root=s.nats_subject_root)
        if s.outbox_broker == "kafka":
            return KafkaPublisher(s.kafka_bootstrap_servers, topic=s.kafka_topic)
        raise InvalidInput("no outbox broker is configured (CALLVET_OUTBOX_BROKER=nats or kafka)",
                           code="no_broker")

    @property
    def outbox_relay(self) -> Relay:
        """The relay from the outbox table to the broker (not started: the API and ``callvet outbox
        relay`` start it)."""
        return self._get("outbox_relay", lambda: Relay(self.db, self.outbox_publisher(),
                                                       batch=self.settings.outbox_batch))

    def start_outbox_relay(self) -> Relay | None:
        """Relay in this process when a broker is set and ``CALLVET_OUTBOX_RELAY`` is on; None otherwise."""
        if self.settings.outbox_broker == "none" or not self.settings.outbox_relay:
            return None
        relay = self.outbox_relay
        relay.start()
        return relay

    # ---- forms -------------------------------------------------------------------------------------
    @property
    def forms(self) -> FormReader:
        """The form reader (OCR models and templates loaded once)."""
        return self._get("forms", lambda: FormReader(threads=1))


def open_services(settings: Settings | None = None, db: Database | None = None) -> Services:
    """The container for a process: settings from the environment, the database opened and its schema
    created unless ``db`` is given."""
    settings = settings or get_settings()
    if db is None:
        settings.ensure_dirs()
        db = Database(settings.database_url)
        db.create_schema()
    return Services(settings, db)
