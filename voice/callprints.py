"""Call prints: every call's voiceprint, kept for a retention period and searched for voice reuse.

Fraud rings use a few people to answer the verification calls of many stolen identities. Each call's
print (never its audio) is stored here as the call goes, and every new call is searched 1:N against the
recent calls of *other* applicants; the same voice answering for a different applicant is ``voice_reuse``.

Who the applicant is comes from the call's start parameters (Twilio ``start.customParameters``, the
FreeSWITCH metadata): ``applicant_id``, ``case_id`` and ``application_id`` (camelCase accepted). Two calls
belong to the same applicant when they share any one of these identifiers; a call with none of them is an
*unknown* applicant: it is still stored and searched, and its matches say ``applicant_known: false``.

Calibration: a hit is ``voice_reuse`` when its calibrated score (the engine's, as for the blacklist)
reaches a threshold chosen for a target false-match rate *per call* (``CALLVET_REUSE_FAR``, default 1 %)
at the store's current size: the best score over N stored prints of other people is a maximum over N
comparisons, so the per-comparison tail comes from ``reuse_calibration.json`` (fitted by
``bench/search/reuse_calibration.py`` on voice-dev call-vs-call impostor scores, families held out) and
the threshold solves ``1 - (1 - p(t)) ** (N * looks) = far``. Without that file the engine's
per-comparison threshold is used and ``reuse_calibrated`` is false.

Retention: prints older than ``CALLVET_CALLPRINT_RETENTION_DAYS`` (default 90) are never returned by a
search and are deleted by :meth:`CallPrintStore.purge` (``callvet calls purge-prints``, and at most once
an hour from the store itself), audited. A print is deletable per call (audited), and goes with its call
record when that is deleted.

The FAISS index (:class:`callvet.voice.index.VectorIndex`: exact below ``CALLVET_CALLPRINT_ANN_THRESHOLD``
prints, IVF above, see docs/blacklist.md for the measured choice) is rebuilt from the database when a
process opens the store and then follows the database by generation: rows and tombstones written after
the generation this process has seen are applied before each search (one cheap query when nothing
changed), so other workers' calls are found at once.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from callvet.core.audit import record
from callvet.core.db import Database, utcnow
from callvet.core.errors import InvalidInput, NotFound
from callvet.core.tables import call_print_tombstones, call_prints, callprint_state
from callvet.voice.calibration import Calibration
from callvet.voice.index import VectorIndex, set_search_threads
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

if TYPE_CHECKING:
    from callvet.voice.engine import VoiceEngine, Voiceprint
    from sqlalchemy import Connection

__all__ = [
    "REUSE_CALIBRATION_FILE",
    "Applicant",
    "CallPrintRecords",
    "CallPrintStore",
    "ReuseResult",
    "load_reuse_calibration",
]

log = logging.getLogger(__name__)

TARGET = "call_print"
REUSE_CALIBRATION_FILE = "reuse_calibration.json"
_IN_CHUNK = 900
_PURGE_EVERY_S = 3600.0
_MAX_AUDIT_IDS = 1000


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


def _clip(v: Any) -> str | None:
    s = str(v).strip() if v is not None else ""
    return s[:100] or None


@dataclass(frozen=True)
class Applicant:
    """Who a call is about; equal when any identifier both sides have is the same."""

    applicant_id: str | None = None
    case_id: str | None = None
    application_id: str | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any] | None, application_id: str | None = None) -> Applicant:
        p = params or {}
        return cls(
            applicant_id=_clip(p.get("applicant_id") or p.get("applicantId")),
            case_id=_clip(p.get("case_id") or p.get("caseId")),
            application_id=_clip(application_id or p.get("application_id") or p.get("applicationId")),
        )

    @property
    def known(self) -> bool:
        return any((self.applicant_id, self.case_id, self.application_id))

    def same_as(self, other: Applicant) -> bool:
        return any(a is not None and a == b for a, b in (
            (self.applicant_id, other.applicant_id), (self.case_id, other.case_id),
            (self.application_id, other.application_id)))

    def to_dict(self) -> dict[str, Any]:
        return {"applicant_id": self.applicant_id, "case_id": self.case_id,
                "application_id": self.application_id}


@dataclass(frozen=True)
class ReuseResult:
    """One search of the call-print store; ``matches`` are other applicants' calls at/above threshold."""

    voice_reuse: bool
    threshold: float
    calibrated: bool
    expected_far: float | None
    searched: int
    best_score: float | None
    matches: list[dict[str, Any]]

    def to_event(self) -> dict[str, Any]:
        """The fields the ``callvet.voiceprint`` event and the call record carry."""
        return {
            "voice_reuse": self.voice_reuse,
            "reuse_threshold": round(self.threshold, 4),
            "reuse_calibrated": self.calibrated,
            "reuse_expected_far": None if self.expected_far is None else round(self.expected_far, 6),
            "reuse_searched": self.searched,
            "reuse_best_score": None if self.best_score is None else round(self.best_score, 4),
            "reuse_matches": self.matches,
        }


def load_reuse_calibration(engine: VoiceEngine, models_dir: Path | None = None) -> Calibration | None:
    """The reuse calibration for this engine's back end, or None (missing, or for another back end)."""
    paths = []
    if os.environ.get("CALLVET_REUSE_CALIBRATION"):
        paths.append(Path(os.environ["CALLVET_REUSE_CALIBRATION"]))
    if models_dir is not None:
        paths.append(Path(models_dir) / "backend" / engine.encoder_name / REUSE_CALIBRATION_FILE)
    for path in paths:
        if not path.is_file():
            continue
        try:
            cal = Calibration(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            log.warning("unreadable reuse calibration %s: %s", path, exc)
            continue
        if cal.backend_id == engine.backend_id:
            return cal
        log.warning("reuse calibration %s is for %s, engine is %s", path, cal.backend_id, engine.backend_id)
    return None


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def _aware(v: datetime) -> datetime:
    from datetime import UTC

    return v if v.tzinfo is not None else v.replace(tzinfo=UTC)


class CallPrintRecords:
    """The database side (store records, delete, purge), usable without loading any model."""

    def __init__(self, db: Database, *, retention_days: float | None = None) -> None:
        self.db = db
        self.retention_days = retention_days if retention_days is not None else _env_float(
            "CALLVET_CALLPRINT_RETENTION_DAYS", 90.0)
        if not self.retention_days > 0:
            raise InvalidInput("CALLVET_CALLPRINT_RETENTION_DAYS must be positive", code="bad_retention")
        self._last_purge = 0.0
        self._ensure_state_row()

    def refresh(self) -> None:
        """Overridden by the searching store; records alone hold no index."""

    def _ensure_state_row(self) -> None:
        with self.db.connect() as conn:
            exists = conn.execute(select(callprint_state.c.id).where(callprint_state.c.id == 1)).first()
        if exists is None:
            try:
                with self.db.begin() as conn:
                    conn.execute(insert(callprint_state).values(id=1, generation=0))
            except IntegrityError:
                pass

    def _read_generation(self, conn: Connection) -> int:
        return int(conn.execute(select(callprint_state.c.generation)
                                .where(callprint_state.c.id == 1)).scalar_one())

    def _bump(self, conn: Connection) -> int:
        """First statement of every write: the state row's lock orders writers, so generations commit
        in the order they are handed out."""
        conn.execute(update(callprint_state).where(callprint_state.c.id == 1)
                     .values(generation=callprint_state.c.generation + 1))
        return self._read_generation(conn)

    def _cutoff(self, now: datetime | None = None) -> datetime:
        return (now or utcnow()) - timedelta(days=self.retention_days)

    def delete(self, call_id: str, actor: str, reason: str) -> dict[str, Any]:
        """Erase one call's print from the database (index at the next search of every process)."""
        reason = (reason or "").strip()
        if not reason:
            raise InvalidInput("a reason is required to delete a call's voiceprint", code="reason_required")
        with self.db.begin() as conn:
            generation = self._bump(conn)
            row = conn.execute(select(call_prints.c.id).where(call_prints.c.call_id == call_id)).first()
            if row is None:
                raise NotFound(f"no stored voiceprint for call {call_id!r}", code="call_print_not_found")
            conn.execute(delete(call_prints).where(call_prints.c.id == row.id))
            conn.execute(insert(call_print_tombstones).values(gen=generation, print_id=row.id, at=utcnow()))
            record(conn, actor, "callprint.delete", TARGET, call_id, reason=reason,
                   details={"print_id": int(row.id)})
        self.refresh()
        return {"call_id": call_id, "print_id": int(row.id), "deleted": True}

    def purge(self, *, now: datetime | None = None, actor: str = "retention") -> dict[str, Any]:
        """Delete prints older than the retention and old tombstones; one audit row per purge."""
        self._last_purge = time.monotonic()
        cutoff = self._cutoff(now)
        with self.db.begin() as conn:
            generation = self._bump(conn)
            rows = conn.execute(select(call_prints.c.id, call_prints.c.call_id)
                                .where(call_prints.c.created_at < cutoff)).all()
            if rows:
                ids = [int(r.id) for r in rows]
                for i in range(0, len(ids), _IN_CHUNK):
                    conn.execute(delete(call_prints).where(call_prints.c.id.in_(ids[i:i + _IN_CHUNK])))
                conn.execute(insert(call_print_tombstones),
                             [{"gen": generation, "print_id": i, "at": utcnow()} for i in ids])
                call_ids = [r.call_id for r in rows]
                record(conn, actor, "callprint.purge", TARGET, "*", reason="retention", details={
                    "cutoff": cutoff.isoformat(), "retention_days": self.retention_days,
                    "purged": len(rows), "call_ids": call_ids[:_MAX_AUDIT_IDS],
                    "call_ids_truncated": len(call_ids) > _MAX_AUDIT_IDS})
            # Tombstones only serve processes catching up; older than the retention nobody needs them.
            conn.execute(delete(call_print_tombstones).where(call_print_tombstones.c.at < self._cutoff()))
        self.refresh()
        return {"purged": len(rows), "cutoff": cutoff.isoformat(), "retention_days": self.retention_days}

    # -- reads ------------------------------------------------------------------------------------------
    def get(self, call_id: str) -> dict[str, Any] | None:
        """The stored print's record (never the vector), or None."""
        with self.db.connect() as conn:
            r = conn.execute(select(
                call_prints.c.id, call_prints.c.call_id, call_prints.c.applicant_id, call_prints.c.case_id,
                call_prints.c.application_id, call_prints.c.backend_id, call_prints.c.net_speech_s,
                call_prints.c.created_at, call_prints.c.updated_at, call_prints.c.reuse)
                .where(call_prints.c.call_id == call_id)).first()
        if r is None:
            return None
        created = _aware(r.created_at)
        return {
            "print_id": int(r.id), "backend_id": r.backend_id,
            "net_speech_s": round(float(r.net_speech_s), 3), "applicant_id": r.applicant_id,
            "case_id": r.case_id, "application_id": r.application_id,
            "created_at": _iso(created), "updated_at": _iso(r.updated_at),
            "expires_at": _iso(created + timedelta(days=self.retention_days)),
            "voice_reuse": bool(r.reuse and r.reuse.get("matches")), "reuse": r.reuse,
        }


class CallPrintStore(CallPrintRecords):
    """Call prints in ``db`` with an in-memory FAISS index over this back end's unexpired prints."""

    def __init__(
        self,
        db: Database,
        engine: VoiceEngine,
        *,
        calibration: Calibration | None = None,
        retention_days: float | None = None,
        far: float | None = None,
        ann_threshold: int | None = None,
        search_k: int = 64,
        max_matches: int = 10,
    ) -> None:
        self.engine = engine
        self.calibration = calibration
        self._sync = threading.RLock()
        self._generation = -1
        super().__init__(db, retention_days=retention_days)
        self.far = far if far is not None else _env_float("CALLVET_REUSE_FAR", 0.01)
        if not 0 < self.far < 1:
            raise InvalidInput("CALLVET_REUSE_FAR must be in (0, 1)", code="bad_far")
        self.ann_threshold = ann_threshold if ann_threshold is not None else int(
            _env_float("CALLVET_CALLPRINT_ANN_THRESHOLD", 50_000))
        self.search_k = search_k
        self.max_matches = max_matches
        set_search_threads()
        self.index = self._build()

    @classmethod
    def from_settings(cls, settings: Any, db: Database, engine: VoiceEngine) -> CallPrintStore:
        return cls(db, engine, calibration=load_reuse_calibration(engine, settings.models_dir))

    # -- the index ------------------------------------------------------------------------------------
    def _rows_to_arrays(self, rows: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray([int(r.id) for r in rows], dtype=np.int64)
        if not rows:
            return ids, np.empty((0, self.engine.dim), dtype=np.float32)
        blob = b"".join(bytes(r.vector) for r in rows)
        return ids, np.frombuffer(blob, dtype="<f4").reshape(-1, self.engine.dim).astype(np.float32)

    def _build(self) -> VectorIndex:
        t0 = time.perf_counter()
        with self.db.connect() as conn:
            generation = self._read_generation(conn)
            rows = conn.execute(select(call_prints.c.id, call_prints.c.vector).where(
                call_prints.c.backend_id == self.engine.backend_id,
                call_prints.c.created_at >= self._cutoff())).all()
        ids, vecs = self._rows_to_arrays(list(rows))
        # IVF-Flat with 4 sqrt(n) lists (4,096 at 10^6) and nprobe from 128: 3.2 ms, recall@1 0.985,
        # recall@5 0.972 at 10^6 realistic prints against 62.6 ms exact (bench/search/ANN.md).
        nlist = min(4096, 4 * round(float(np.sqrt(max(len(ids), 1)))))
        index = VectorIndex.build(self.engine.dim, ids, vecs, ann_threshold=self.ann_threshold, nlist=nlist,
                                  nprobe=max(16, nlist // 32))
        self._generation = generation
        log.info("call-print index built: %d prints, %s, %.1f s", len(index), index.kind,
                 time.perf_counter() - t0)
        return index

    def refresh(self) -> None:
        """Apply prints and tombstones written since the generation this process has seen."""
        with self.db.connect() as conn:
            if self._read_generation(conn) == self._generation:
                return
        with self._sync:
            with self.db.connect() as conn:
                generation = self._read_generation(conn)
                if generation == self._generation:
                    return
                new = conn.execute(select(call_prints.c.id, call_prints.c.vector).where(
                    call_prints.c.gen > self._generation, call_prints.c.gen <= generation,
                    call_prints.c.backend_id == self.engine.backend_id)).all()
                gone = conn.execute(select(call_print_tombstones.c.print_id).where(
                    call_print_tombstones.c.gen > self._generation,
                    call_print_tombstones.c.gen <= generation)).scalars().all()
            if self.index.kind == "exact" and len(self.index) + len(new) > self.ann_threshold:
                self.index = self._build()
                return
            if gone:
                self.index.remove([int(g) for g in gone])
            ids, vecs = self._rows_to_arrays(list(new))
            fresh = np.asarray([i for i in ids.tolist() if i not in self.index], dtype=np.int64)
            if len(fresh):
                self.index.add(fresh, vecs[np.isin(ids, fresh)])
            self._generation = generation

    # -- search -----------------------------------------------------------------------------------------
    def threshold(self, n: int, looks_ratio: float = 1.0) -> tuple[float, bool, float | None]:
        """(threshold, calibrated, expected false-match rate per call) for a search of ``n`` prints."""
        cal = self.calibration
        if cal is None:
            return float(self.engine.threshold), False, None
        n_eff = max(1.0, n * (1.0 + cal.looks_gamma * math.log(max(looks_ratio, 1.0))))
        t = cal.threshold(self.far, n_eff)
        return t, True, cal.far(t, n_eff)

    def search(self, vp: Voiceprint, applicant: Applicant, *, exclude_call_id: str | None = None,
               looks_ratio: float = 1.0) -> ReuseResult:
        """Other applicants' recent calls in this voice (scores calibrated as the blacklist's)."""
        self.refresh()
        n = len(self.index)
        t, calibrated, far = self.threshold(n, looks_ratio)
        if n == 0:
            return ReuseResult(False, t, calibrated, far, 0, None, [])
        k = min(n, self.search_k)
        raw, ids = self.index.search(np.asarray(vp.vector, dtype=np.float32), k)
        keep = ids[0] >= 0
        raw_s, print_ids = raw[0][keep], [int(i) for i in ids[0][keep]]
        rows: dict[int, Any] = {}
        cutoff = self._cutoff()
        with self.db.connect() as conn:
            for i in range(0, len(print_ids), _IN_CHUNK):
                for r in conn.execute(select(
                        call_prints.c.id, call_prints.c.call_id, call_prints.c.applicant_id,
                        call_prints.c.case_id, call_prints.c.application_id, call_prints.c.stats_mean,
                        call_prints.c.stats_std, call_prints.c.net_speech_s, call_prints.c.created_at)
                        .where(call_prints.c.id.in_(print_ids[i:i + _IN_CHUNK]))):
                    rows[int(r.id)] = r
        cand = [(pid, float(s)) for pid, s in zip(print_ids, raw_s, strict=True)
                if pid in rows and rows[pid].call_id != exclude_call_id
                and _aware(rows[pid].created_at) >= cutoff]
        others = [(pid, s) for pid, s in cand if not applicant.same_as(Applicant(
            rows[pid].applicant_id, rows[pid].case_id, rows[pid].application_id))]
        if not others:
            return ReuseResult(False, t, calibrated, far, n, None, [])
        stats = np.array([[rows[p].stats_mean, rows[p].stats_std] for p, _ in others], dtype=np.float64)
        scores = np.asarray(self.engine.calibrate(vp, np.array([s for _, s in others]), stats), dtype=float)
        order = np.argsort(-scores)
        matches = []
        for j in order:
            if scores[j] < t or len(matches) >= self.max_matches:
                break
            r = rows[others[j][0]]
            other = Applicant(r.applicant_id, r.case_id, r.application_id)
            matches.append({"call_id": r.call_id, **other.to_dict(),
                            "applicant_known": bool(other.known and applicant.known),
                            "score": round(float(scores[j]), 4),
                            "net_speech_s": round(float(r.net_speech_s), 3),
                            "at": _iso(r.created_at)})
        return ReuseResult(bool(matches), t, calibrated, far, n, float(scores[order[0]]), matches)

    # -- writes -----------------------------------------------------------------------------------------
    def upsert(self, call_id: str, applicant: Applicant, vp: Voiceprint,
               reuse: ReuseResult | None = None) -> int:
        """Store (or replace, as the call's speech grows) the call's print; returns the print id."""
        vector = np.ascontiguousarray(vp.vector, dtype="<f4")
        if vector.shape != (self.engine.dim,):
            raise ValueError(f"print has shape {vector.shape}, expected ({self.engine.dim},)")
        now = utcnow()
        reuse_doc = None
        if reuse is not None and reuse.matches:
            reuse_doc = {"threshold": round(reuse.threshold, 4), "calibrated": reuse.calibrated,
                         "matches": reuse.matches, "at": now.isoformat()}
        with self.db.begin() as conn:
            generation = self._bump(conn)
            old = conn.execute(select(call_prints.c.id, call_prints.c.created_at, call_prints.c.reuse)
                               .where(call_prints.c.call_id == call_id)).first()
            created = now
            if old is not None:
                created = old.created_at
                if reuse_doc is None:
                    reuse_doc = old.reuse
                conn.execute(delete(call_prints).where(call_prints.c.id == old.id))
                conn.execute(insert(call_print_tombstones).values(gen=generation, print_id=old.id, at=now))
            new_id = int(conn.execute(insert(call_prints).values(
                call_id=call_id, **applicant.to_dict(), backend_id=self.engine.backend_id,
                dim=self.engine.dim, vector=vector.tobytes(), stats_mean=float(vp.stats[0]),
                stats_std=float(vp.stats[1]), net_speech_s=float(vp.net_speech_s), gen=generation,
                created_at=created, updated_at=now, reuse=reuse_doc,
            ).returning(call_prints.c.id)).scalar_one())
            if old is None:
                record(conn, "call-server", "callprint.store", TARGET, call_id, details={
                    "print_id": new_id, "backend_id": self.engine.backend_id,
                    "retention_days": self.retention_days, **applicant.to_dict()})
        if time.monotonic() - self._last_purge > _PURGE_EVERY_S:
            try:
                self.purge()
            except Exception:
                log.exception("call-print retention purge failed")
        return new_id

    def voiceprint(self, call_id: str) -> Voiceprint:
        """The stored print of a call (for enrolling it on the blacklist)."""
        from callvet.voice.engine import Voiceprint

        with self.db.connect() as conn:
            r = conn.execute(select(call_prints).where(call_prints.c.call_id == call_id)).first()
        if r is None or _aware(r.created_at) < self._cutoff():
            raise NotFound(f"no stored voiceprint for call {call_id!r}", code="call_print_not_found")
        if r.backend_id != self.engine.backend_id:
            raise InvalidInput(f"call {call_id}'s print was made by back end {r.backend_id}, the engine "
                               f"is {self.engine.backend_id}; it cannot be enrolled",
                               code="print_backend_mismatch")
        vec = np.frombuffer(bytes(r.vector), dtype="<f4").astype(np.float32)
        return Voiceprint(vec, (float(r.stats_mean), float(r.stats_std)), float(r.net_speech_s))

    def status(self) -> dict[str, Any]:
        self.refresh()
        n = len(self.index)
        t, calibrated, far = self.threshold(n)
        with self.db.connect() as conn:
            total = int(conn.execute(select(func.count()).select_from(call_prints)).scalar_one())
        return {
            "backend_id": self.engine.backend_id, "kind": self.index.kind, "searchable_prints": n,
            "stored_prints": total, "nprobe": self.index.nprobe, "retention_days": self.retention_days,
            "target_far": self.far, "threshold": round(t, 4), "calibrated": calibrated,
            "expected_far": None if far is None else round(far, 6), "generation": self._generation,
        }

    def close(self) -> None:
        return None
