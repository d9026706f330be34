"""The fraudster blacklist: identities, their voiceprints in the database, and a FAISS index over them.

The database is the source of truth; the FAISS index is a cache of it that is checked, not trusted:

* on open, the persisted index is used only if its sidecar matches the database (same encoder/back end,
  same count, max id and checksum of the ids); otherwise it is rebuilt from the stored prints;
* every add or delete bumps ``blacklist_state.generation`` in the same transaction as the change and its
  audit row; before each search that generation is compared with the one this process synced to, so
  prints added or deleted by another process (the CLI, another API worker) are picked up at once: on
  SQLite by one query per search, on PostgreSQL from a LISTEN/NOTIFY listener
  (:mod:`callvet.voice.blacklist_sync`, ``CALLVET_BLACKLIST_LISTEN``) with no query while it is healthy,
  and by the per-search query whenever it is not;
* a deletion removes the vectors from the in-memory index and rewrites the persisted file before it
  returns: a deleted person's biometric data leaves the database and the index in the same operation.

Raw audio is never stored, only prints, their cohort statistics and the SHA-256 of the uploaded bytes.
Identity-level score = the best calibrated score over the identity's prints (see docs/blacklist.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from callvet.core.audit import record
from callvet.core.db import Database, utcnow
from callvet.core.errors import Conflict, InvalidInput, NotFound
from callvet.core.settings import env_value
from callvet.voice.blacklist_index import BlacklistIndex, chunks
from callvet.voice.indomain import InDomainNull, fit_indomain_best, recent_call_prints, recent_checkpoint
from callvet.voice.tables import blacklist_identities, blacklist_samples
from callvet.voice.tiers import IdentifyResult, Match, TierConfig, decide, operating_points
from sqlalchemy import delete, func, insert, select

if TYPE_CHECKING:
    from callvet.core.settings import Settings
    from callvet.voice.engine import VoiceEngine, Voiceprint
    from sqlalchemy import Connection

__all__ = ["Blacklist", "IdentifyResult", "Match"]

log = logging.getLogger(__name__)

TARGET = "blacklist_identity"
MAX_LABEL = 200
MAX_NOTES = 10_000


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class Blacklist(BlacklistIndex):
    """Identities and prints in ``db``, searched through a FAISS index persisted under ``index_dir``."""

    def __init__(
        self,
        db: Database,
        engine: VoiceEngine,
        index_dir: Path,
        *,
        ann_threshold: int | None = None,
        nprobe: int | None = None,
        search_k: int = 64,
    ) -> None:
        super().__init__(db, engine, index_dir, ann_threshold=ann_threshold, nprobe=nprobe)
        self.search_k = search_k
        self.tier_config = TierConfig.from_env()
        self.alarm_far, self.review_far = self.tier_config.alarm_far, self.tier_config.review_far
        self._counts: tuple[int, int, int] = (-1, 0, 0)
        self.in_domain_on = bool(env_value("openset_in_domain"))
        self._in_domain: tuple[tuple[int, int], InDomainNull | None] | None = None
        self._in_domain_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, db: Database, engine: VoiceEngine) -> Blacklist:
        return cls(db, engine, settings.data_dir / "faiss")

    def status(self) -> dict[str, Any]:
        """The index as this process sees it, and prints of other back ends that are not searched."""
        from callvet.voice.reenrol import reenrolment_report

        self.refresh()
        reenrol = reenrolment_report(self.db, self.engine.backend_id)
        identities, prints = self.counts()
        tiers = self.operating_points()
        call_tiers = self.operating_points(looks_ratio=self.call_looks_ratio())
        cal = self.engine.calibration
        return {
            "backend_id": self.engine.backend_id,
            "threshold": float(tiers["alarm"]["threshold"] if tiers else self.engine.threshold),
            "calibrated": cal is not None, "identities": identities, "prints": prints,
            "target_far": {"alarm": self.alarm_far, "review": self.review_far},
            "identify": tiers, "call": call_tiers,
            "in_domain": self._in_domain_status(),
            "calibration": None if cal is None else {
                "min_net_speech_s": cal.min_net_speech_s,
                "cohort_prints": 0 if cal.cohort is None else len(cal.cohort),
                "cohort_top_n": cal.cohort_top_n, "prints_exponent": cal.prints_exponent,
                "looks_gamma": cal.looks_gamma, "call_looks_ratio": round(self.call_looks_ratio(), 3),
                **{k: v for k, v in cal.meta.items() if not k.startswith("_")}},
            "kind": self.index.kind, "searchable_prints": len(self.index), "nprobe": self.index.nprobe,
            "recall": asdict(self.index.recall) if self.index.recall else None,
            "generation": self._generation, "ann_threshold": self.ann_threshold,
            "opened": dict(self.index_status), "reenrolment": reenrol,
            "unsearchable_prints_by_backend": reenrol["unsearchable_prints_by_backend"],
        }

    def _enrolled_calls(self, rows: list[Any]) -> set[str]:
        """Calls among ``rows`` whose print is enrolled on the blacklist (:meth:`add_print`): labelled
        fraudsters, not traffic, so they are left out of the in-domain null."""
        digests = {hashlib.sha256(b"call:" + str(r.call_id).encode() + b":" + bytes(r.vector)).hexdigest():
                   str(r.call_id) for r in rows}
        found: set[str] = set()
        with self.db.connect() as conn:
            for chunk in chunks(list(digests)):
                found.update(digests[d] for d in conn.execute(
                    select(blacklist_samples.c.sha256).where(blacklist_samples.c.sha256.in_(chunk))).scalars())
        return found

    def _in_domain_status(self) -> dict[str, Any] | None:
        if not self.in_domain_on:
            return None
        null = self.in_domain_null()
        return {"enabled": True, "active": null is not None,
                **(null.to_dict() if null else {"recent_calls": 0})}

    # -- open-set operating points -------------------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        """(identities with a searchable print, searchable prints), read from the database once per
        generation, so every replica derives the same thresholds from the same blacklist."""
        generation = self._generation_now()
        if self._counts[0] == generation:
            return self._counts[1], self._counts[2]
        with self.db.connect() as conn:
            row = conn.execute(
                select(func.count(func.distinct(blacklist_samples.c.identity_id)), func.count())
                .where(blacklist_samples.c.backend_id == self.engine.backend_id)).one()
        self._counts = (generation, int(row[0]), int(row[1]))
        return self._counts[1], self._counts[2]

    def call_looks_ratio(self) -> float:
        """Last over first look of the longest scored call (``CALLVET_CALL_MAX_SCORED_S``, default 60 s;
        the first look comes at the engine's minimum net speech)."""
        longest = float(os.environ.get("CALLVET_CALL_MAX_SCORED_S", "60"))
        return max(longest / max(self.engine.min_net_speech_s, 0.1), 1.0)

    def operating_points(self, looks_ratio: float = 1.0) -> dict[str, dict[str, Any]] | None:
        """Alarm and review thresholds for one search of the blacklist as it is now (None when the
        engine has no open-set calibration: then the back end's per-comparison threshold applies)."""
        cal = self.engine.calibration
        if cal is None:
            return None
        identities, prints = self.counts()
        return operating_points(cal, self.tier_config, identities, prints, looks_ratio=looks_ratio,
                                min_net_speech_s=self.engine.min_net_speech_s,
                                in_domain=self.in_domain_null())

    def in_domain_null(self) -> InDomainNull | None:
        """The null of recent calls' best scores against this blacklist (``CALLVET_OPENSET_IN_DOMAIN``),
        recomputed when the blacklist's generation or the recent-call checkpoint moves; None when off,
        uncalibrated, or with fewer than ``CALLVET_IN_DOMAIN_MIN_CALLS`` stored calls long enough to
        alarm on. The same stored prints and blacklist give every replica the same null."""
        cal = self.engine.calibration
        if cal is None or not self.in_domain_on:
            return None
        with self._in_domain_lock:
            key = (self._generation_now(), recent_checkpoint(self.db, self.engine.backend_id))
            if self._in_domain is not None and self._in_domain[0] == key:
                return self._in_domain[1]
            rows = recent_call_prints(self.db, self.engine.backend_id, key[1],
                                      min_net_speech_s=self.tier_config.alarm_min_speech_s,
                                      limit=int(env_value("in_domain_max_calls")))
            from callvet.voice.engine import Voiceprint

            enrolled = self._enrolled_calls(rows)
            best = []
            for r in rows:
                if r.call_id in enrolled:
                    continue
                vp = Voiceprint(np.frombuffer(bytes(r.vector), dtype="<f4").astype(np.float32),
                                (float(r.stats_mean), float(r.stats_std)), float(r.net_speech_s))
                top = self._score_identities(vp, top_k=1)
                if top:
                    best.append(top[0].score)
            null = fit_indomain_best(np.asarray(best), self.counts()[0],
                                     min_calls=int(env_value("in_domain_min_calls")))
            self._in_domain = (key, null)
            return null

    # -- identities ---------------------------------------------------------------------------------------

    def create_identity(self, label: str, notes: str, actor: str) -> dict[str, Any]:
        label = (label or "").strip()
        notes = notes or ""
        if not label:
            raise InvalidInput("label must not be empty", code="invalid_label")
        if len(label) > MAX_LABEL:
            raise InvalidInput(f"label is longer than {MAX_LABEL} characters", code="invalid_label")
        if len(notes) > MAX_NOTES:
            raise InvalidInput(f"notes are longer than {MAX_NOTES} characters", code="invalid_notes")
        now = utcnow()
        with self.db.begin() as conn:
            new_id = conn.execute(
                insert(blacklist_identities)
                .values(label=label, notes=notes, created_by=actor, created_at=now)
                .returning(blacklist_identities.c.id)
            ).scalar_one()
            record(conn, actor, "blacklist.identity.create", TARGET, new_id, details={"label": label})
        return {"id": int(new_id), "label": label, "notes": notes, "created_by": actor,
                "created_at": now.isoformat(), "samples": 0}

    def _identity(self, conn: Connection, identity_id: int) -> Any:
        stmt = select(blacklist_identities).where(blacklist_identities.c.id == identity_id)
        row = conn.execute(stmt).first()
        if row is None:
            raise NotFound(f"no blacklist identity {identity_id}", code="identity_not_found")
        return row

    def list_identities(self) -> list[dict[str, Any]]:
        counts = (select(blacklist_samples.c.identity_id, func.count().label("n"),
                         func.coalesce(func.sum(blacklist_samples.c.net_speech_s), 0.0).label("speech"))
                  .group_by(blacklist_samples.c.identity_id).subquery())
        stmt = (select(blacklist_identities, counts.c.n, counts.c.speech)
                .select_from(blacklist_identities.outerjoin(
                    counts, counts.c.identity_id == blacklist_identities.c.id))
                .order_by(blacklist_identities.c.id))
        with self.db.connect() as conn:
            rows = conn.execute(stmt).all()
        return [{"id": r.id, "label": r.label, "notes": r.notes, "created_by": r.created_by,
                 "created_at": _iso(r.created_at), "samples": int(r.n or 0),
                 "net_speech_s": round(float(r.speech or 0.0), 3)} for r in rows]

    def get_identity(self, identity_id: int) -> dict[str, Any]:
        with self.db.connect() as conn:
            row = self._identity(conn, identity_id)
            samples = conn.execute(
                select(blacklist_samples.c.id, blacklist_samples.c.net_speech_s,
                       blacklist_samples.c.backend_id, blacklist_samples.c.sha256,
                       blacklist_samples.c.created_by, blacklist_samples.c.created_at)
                .where(blacklist_samples.c.identity_id == identity_id).order_by(blacklist_samples.c.id)
            ).all()
        return {
            "id": row.id, "label": row.label, "notes": row.notes, "created_by": row.created_by,
            "created_at": _iso(row.created_at), "samples": len(samples),
            "net_speech_s": round(sum(float(s.net_speech_s) for s in samples), 3),
            "prints": [{"sample_id": s.id, "net_speech_s": round(float(s.net_speech_s), 3),
                        "backend_id": s.backend_id, "searchable": s.backend_id == self.engine.backend_id,
                        "sha256": s.sha256, "created_by": s.created_by, "created_at": _iso(s.created_at)}
                       for s in samples],
        }

    def delete_identity(self, identity_id: int, actor: str, reason: str) -> dict[str, Any]:
        """Delete the identity and every print of it from the database and the index, audited."""
        reason = (reason or "").strip()
        if not reason:
            raise InvalidInput("a reason is required to delete a blacklist identity", code="reason_required")
        with self.db.begin() as conn:
            row = self._identity(conn, identity_id)
            owned = select(blacklist_samples.c.id).where(blacklist_samples.c.identity_id == identity_id)
            sample_ids = [int(s) for s in conn.execute(owned).scalars()]
            conn.execute(delete(blacklist_samples).where(blacklist_samples.c.identity_id == identity_id))
            conn.execute(delete(blacklist_identities).where(blacklist_identities.c.id == identity_id))
            generation = self._bump(conn)
            record(conn, actor, "blacklist.identity.delete", TARGET, identity_id, reason=reason,
                   details={"label": row.label, "samples_removed": len(sample_ids), "sample_ids": sample_ids})
        self._apply(generation, remove=sample_ids)
        return {"id": identity_id, "label": row.label, "samples_removed": len(sample_ids)}

    # -- prints -------------------------------------------------------------------------------------------

    def _neighbours(self, vp: Voiceprint, identity_id: int) -> tuple[list[dict[str, Any]], list[float]]:
        """(other identities this print already matches at the alarm threshold in force, at most 5;
        its scores against its own identity's prints): what an analyst is warned of when enrolling,
        whether from an upload or from a call."""
        scored = self._score_identities(vp, top_k=10)
        tiers = self.operating_points()
        dup_t = float(tiers["alarm"]["threshold"]) if tiers else float(self.engine.threshold)
        duplicates = [m.to_dict() for m in scored if m.identity_id != identity_id and m.score >= dup_t][:5]
        return duplicates, [m.score for m in scored if m.identity_id == identity_id]

    def _insert_print(self, conn: Connection, identity_id: int, vector: np.ndarray, vp: Voiceprint,
                      digest: str, actor: str) -> int:
        return int(conn.execute(
            insert(blacklist_samples).values(
                identity_id=identity_id, backend_id=self.engine.backend_id, dim=self.engine.dim,
                vector=vector.tobytes(), stats_mean=float(vp.stats[0]), stats_std=float(vp.stats[1]),
                net_speech_s=float(vp.net_speech_s), sha256=digest, created_by=actor, created_at=utcnow(),
            ).returning(blacklist_samples.c.id)
        ).scalar_one())

    def add_sample(self, identity_id: int, data: bytes, actor: str, *, spoof: Any = None,
                   override_spoof: bool = False, override_reason: str = "",
                   **decode_kw: Any) -> dict[str, Any]:
        """Enrol one recording; warns (never refuses) when it matches another identity above threshold.

        The same bytes twice for one identity is a ``Conflict`` only within one back end: after an
        encoder/back-end change the original recordings must be re-enrolled (audio is not kept).

        ``spoof`` (a :class:`~callvet.voice.spoof.SpoofDetector`, or a callable raising the detector's
        ``Unavailable``) gates enrolment: a recording it flags as synthetic or replayed is refused
        (``Conflict`` ``spoof_flagged``, audited) unless ``override_spoof`` with a reason, which is
        audited as ``blacklist.sample.spoof_override``. ``spoof=None`` skips the check (library use).
        """
        with self.db.connect() as conn:
            self._identity(conn, identity_id)
        audio = self.engine.decode(data, **decode_kw)
        analysis = self.engine.analyse(audio)
        vp = self.engine.voiceprint(analysis.speech, enrol=True)
        spoof_out = self._spoof_gate(spoof, analysis.speech, identity_id, data, actor,
                                     override_spoof, override_reason)
        vector = np.ascontiguousarray(vp.vector, dtype="<f4")
        if vector.shape != (self.engine.dim,):
            raise ValueError(f"engine print has shape {vector.shape}, expected ({self.engine.dim},)")
        digest = hashlib.sha256(data).hexdigest()
        duplicates, own = self._neighbours(vp, identity_id)
        with self.db.begin() as conn:
            self._identity(conn, identity_id)
            same = conn.execute(select(blacklist_samples.c.id).where(
                blacklist_samples.c.identity_id == identity_id, blacklist_samples.c.sha256 == digest,
                blacklist_samples.c.backend_id == self.engine.backend_id)).first()
            if same is not None:
                raise Conflict(f"this recording is already sample {same.id} of identity {identity_id}",
                               code="duplicate_sample", sample_id=int(same.id))
            sample_id = self._insert_print(conn, identity_id, vector, vp, digest, actor)
            generation = self._bump(conn)
            record(conn, actor, "blacklist.sample.add", TARGET, identity_id, details={
                "sample_id": sample_id, "sha256": digest, "net_speech_s": round(vp.net_speech_s, 3),
                "backend_id": self.engine.backend_id,
                "possible_duplicate_of": [d["identity_id"] for d in duplicates], "spoof": spoof_out})
            if spoof_out is not None and (spoof_out.get("flag") or spoof_out.get("error")):
                record(conn, actor, "blacklist.sample.spoof_override", TARGET, identity_id,
                       reason=override_reason.strip(), details={"sample_id": sample_id, "sha256": digest,
                                                                "spoof": spoof_out})
        self._apply(generation, add=(sample_id, vector))
        return {
            "sample_id": sample_id, "identity_id": identity_id,
            "net_speech_s": round(vp.net_speech_s, 3), "duration_s": round(analysis.duration_s, 3),
            "sha256": digest, "backend_id": self.engine.backend_id,
            "possible_duplicate_of": duplicates,
            "self_score": round(max(own), 4) if own else None,
            "spoof": spoof_out,
        }

    def add_print(self, identity_id: int, vp: Voiceprint, actor: str, *, call_id: str) -> dict[str, Any]:
        """Enrol a stored call print (no audio: the call's voiceprint is what was kept), audited with
        the call id; the same call twice for one identity is a ``Conflict`` (``duplicate_sample``)."""
        vector = np.ascontiguousarray(vp.vector, dtype="<f4")
        if vector.shape != (self.engine.dim,):
            raise ValueError(f"print has shape {vector.shape}, expected ({self.engine.dim},)")
        with self.db.connect() as conn:
            self._identity(conn, identity_id)
        digest = hashlib.sha256(b"call:" + call_id.encode() + b":" + vector.tobytes()).hexdigest()
        duplicates, own = self._neighbours(vp, identity_id)
        with self.db.begin() as conn:
            self._identity(conn, identity_id)
            same = conn.execute(select(blacklist_samples.c.id).where(
                blacklist_samples.c.identity_id == identity_id, blacklist_samples.c.sha256 == digest)).first()
            if same is not None:
                raise Conflict(f"call {call_id}'s print is already sample {same.id} of identity "
                               f"{identity_id}",
                               code="duplicate_sample", sample_id=int(same.id))
            sample_id = self._insert_print(conn, identity_id, vector, vp, digest, actor)
            generation = self._bump(conn)
            record(conn, actor, "blacklist.sample.add", TARGET, identity_id, details={
                "sample_id": sample_id, "from_call_id": call_id, "sha256": digest,
                "net_speech_s": round(vp.net_speech_s, 3), "backend_id": self.engine.backend_id,
                "possible_duplicate_of": [d["identity_id"] for d in duplicates]})
        self._apply(generation, add=(sample_id, vector))
        return {
            "sample_id": sample_id, "identity_id": identity_id, "from_call_id": call_id,
            "net_speech_s": round(vp.net_speech_s, 3), "duration_s": round(vp.net_speech_s, 3),
            "sha256": digest, "backend_id": self.engine.backend_id, "possible_duplicate_of": duplicates,
            "self_score": round(max(own), 4) if own else None,
        }

    def _spoof_gate(self, spoof: Any, speech16k: np.ndarray, identity_id: int, data: bytes, actor: str,
                    override: bool, reason: str) -> dict[str, Any] | None:
        """The spoof check of an enrolment; raises ``Conflict`` for a flagged recording without override
        (the refusal is audited in its own transaction, so it survives the refused request)."""
        if spoof is None:
            return None
        from callvet.core.errors import Unavailable

        reason = (reason or "").strip()
        if override and not reason:
            raise InvalidInput("override_spoof needs a reason (kept in the audit log)",
                               code="reason_required")
        try:
            detector = spoof() if callable(spoof) and not hasattr(spoof, "score") else spoof
            out: dict[str, Any] = detector.score(speech16k).to_dict()
        except Unavailable as exc:
            if not override:
                raise Unavailable(f"the spoof check cannot run ({exc.message}); enrol with "
                                  "override_spoof and a reason to proceed without it",
                                  code="spoof_unavailable") from exc
            out = {"score": None, "flag": None, "kind": None, "error": exc.code}
        if out["flag"] and not override:
            digest = hashlib.sha256(data).hexdigest()
            with self.db.begin() as conn:
                record(conn, actor, "blacklist.sample.spoof_refused", TARGET, identity_id,
                       details={"sha256": digest, "spoof": out})
            raise Conflict(f"this recording is flagged as {out['kind'] or 'spoofed'} speech (score "
                           f"{out['score']}); enrolment needs override_spoof with a reason",
                           code="spoof_flagged", spoof=out)
        return out

    # -- search -------------------------------------------------------------------------------------------

    def identify(self, data: bytes, **decode_kw: Any) -> IdentifyResult:
        audio = self.engine.decode(data, **decode_kw)
        analysis = self.engine.analyse(audio)
        vp = self.engine.voiceprint(analysis.speech)
        return self.identify_voiceprint(vp)

    def identify_voiceprint(self, vp: Voiceprint, top_k: int = 5, *,
                            looks_ratio: float = 1.0) -> IdentifyResult:
        """``looks_ratio``: 1 for one request; a live call passes :meth:`call_looks_ratio`, since it looks
        again as its speech grows and each look is another chance of a false alarm."""
        if top_k <= 0:
            raise InvalidInput("top_k must be positive", code="invalid_top_k")
        matches = self._score_identities(vp, top_k=top_k)
        tiers = self.operating_points(looks_ratio=looks_ratio)
        if tiers is None:
            threshold = float(self.engine.threshold)
            review_t = None
        else:
            threshold = float(tiers["alarm"]["threshold"])
            review_t = float(tiers["review"]["threshold"])
        best = matches[0].score if matches else None
        alarm, review, capped = decide(best, float(vp.net_speech_s), threshold, review_t,
                                       self.tier_config.alarm_min_speech_s if tiers else 0.0)
        return IdentifyResult(
            net_speech_s=float(vp.net_speech_s), alarm=alarm, threshold=round(threshold, 4),
            matches=matches, backend_id=self.engine.backend_id, searched=len(self.index), review=review,
            review_threshold=None if review_t is None else round(review_t, 4), tiers=tiers, capped=capped,
        )

    def _score_identities(self, vp: Voiceprint, *, top_k: int) -> list[Match]:
        """Top prints by raw inner product, calibrated, then the best score per identity."""
        self.refresh()
        n = len(self.index)
        if n == 0:
            return []
        k = min(n, max(self.search_k, top_k * 8))
        raw, ids = self.index.search(np.asarray(vp.vector, dtype=np.float32), k)
        keep = ids[0] >= 0
        raw_scores, sample_ids = raw[0][keep], ids[0][keep]
        rows: dict[int, Any] = {}
        with self.db.connect() as conn:
            for chunk in chunks([int(s) for s in sample_ids]):
                for r in conn.execute(
                    select(blacklist_samples.c.id, blacklist_samples.c.identity_id,
                           blacklist_samples.c.stats_mean, blacklist_samples.c.stats_std,
                           blacklist_samples.c.vector, blacklist_samples.c.net_speech_s,
                           blacklist_identities.c.label)
                    .join(blacklist_identities, blacklist_identities.c.id == blacklist_samples.c.identity_id)
                    .where(blacklist_samples.c.id.in_(chunk))
                ):
                    rows[int(r.id)] = r
        present = np.array([int(s) in rows for s in sample_ids], dtype=bool)
        if not present.any():
            return []
        raw_scores, sample_ids = raw_scores[present], sample_ids[present]
        stats = np.array([[rows[int(s)].stats_mean, rows[int(s)].stats_std] for s in sample_ids],
                         dtype=np.float64)
        cal = self.engine.calibration
        if cal is None:
            calibrated = np.asarray(self.engine.calibrate(vp, raw_scores, stats), dtype=np.float64)
            llrs: list[float | None] = [None] * len(calibrated)
        else:
            vecs = np.frombuffer(b"".join(bytes(rows[int(s)].vector) for s in sample_ids),
                                 dtype="<f4").reshape(len(sample_ids), -1)
            calibrated = np.asarray(self.engine.normalise(vp, raw_scores, vecs, stats), dtype=np.float64)
            model_s = np.array([float(rows[int(s)].net_speech_s) for s in sample_ids])
            llrs = [round(float(v), 3) for v in cal.llr(calibrated, vp.net_speech_s, model_s)]
        best: dict[int, Match] = {}
        for sid, score, llr in zip(sample_ids, calibrated, llrs, strict=True):
            r = rows[int(sid)]
            current = best.get(int(r.identity_id))
            if current is None or score > current.score:
                best[int(r.identity_id)] = Match(int(r.identity_id), r.label, round(float(score), 4), llr)
        return sorted(best.values(), key=lambda m: -m.score)[:top_k]
