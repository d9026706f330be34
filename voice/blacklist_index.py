"""The blacklist's FAISS index kept in step with the database: the truth is the stored prints, the
index is a cache of them that is checked, not trusted (the rules are in :mod:`callvet.voice.blacklist`'s
docstring). Split from the blacklist so the identity and enrolment logic reads on its own; the
:class:`~callvet.voice.blacklist.Blacklist` is this index plus identities, enrolment and search."""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from callvet.core.db import Database
from callvet.core.settings import env_value
from callvet.voice.blacklist_sync import GenerationListener
from callvet.voice.index import IndexLoadError, VectorIndex, ids_checksum, set_search_threads
from callvet.voice.tables import blacklist_samples, blacklist_state
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

if TYPE_CHECKING:
    from callvet.voice.engine import VoiceEngine
    from sqlalchemy import Connection

__all__ = ["SYNC_SAVE_LIMIT", "BlacklistIndex", "chunks"]

log = logging.getLogger("callvet.voice.blacklist")

#: Above this many prints a persisted save is deferred to ``close()`` (deletions always save at once).
SYNC_SAVE_LIMIT = 20_000
_IN_CHUNK = 900
_T = TypeVar("_T")


def chunks(ids: list[_T], size: int = _IN_CHUNK) -> list[list[_T]]:
    """``ids`` in slices small enough for one SQL ``IN (...)`` on every database."""
    return [ids[i:i + size] for i in range(0, len(ids), size)]


class BlacklistIndex:
    """This back end's stored prints in ``db`` and the FAISS index over them under ``index_dir``."""

    def __init__(self, db: Database, engine: VoiceEngine, index_dir: Path, *,
                 ann_threshold: int | None = None, nprobe: int | None = None) -> None:
        self.db = db
        self.engine = engine
        self.index_dir = Path(index_dir)
        self.ann_threshold = ann_threshold if ann_threshold is not None else int(env_value("ann_threshold"))
        self.nprobe = nprobe if nprobe is not None else int(env_value("ann_nprobe"))
        set_search_threads()
        self._sync = threading.RLock()
        self._dirty = False
        self._generation = -1
        self.index_status: dict[str, Any] = {}
        self._ensure_state_row()
        self.index = self._open_index()
        #: The PostgreSQL LISTEN/NOTIFY listener (None on SQLite or with CALLVET_BLACKLIST_LISTEN=0).
        self.listener: GenerationListener | None = None
        if db.dialect == "postgresql" and env_value("blacklist_listen"):
            self.listener = GenerationListener(
                db, safety_s=float(env_value("blacklist_listen_safety_s")),
                owner=weakref.ref(self)).start()

    def _ensure_state_row(self) -> None:
        with self.db.connect() as conn:
            exists = conn.execute(select(blacklist_state.c.id).where(blacklist_state.c.id == 1)).first()
        if exists is None:
            try:
                with self.db.begin() as conn:
                    conn.execute(insert(blacklist_state).values(id=1, generation=0))
            except IntegrityError:
                pass

    def _read_generation(self, conn: Connection | None = None) -> int:
        stmt = select(blacklist_state.c.generation).where(blacklist_state.c.id == 1)
        if conn is not None:
            return int(conn.execute(stmt).scalar_one())
        with self.db.connect() as c:
            return int(c.execute(stmt).scalar_one())

    def _bump(self, conn: Connection) -> int:
        conn.execute(update(blacklist_state).where(blacklist_state.c.id == 1)
                     .values(generation=blacklist_state.c.generation + 1))
        return self._read_generation(conn)

    def _db_ids(self) -> np.ndarray:
        with self.db.connect() as conn:
            rows = conn.execute(select(blacklist_samples.c.id)
                                .where(blacklist_samples.c.backend_id == self.engine.backend_id)).scalars()
            return np.fromiter(rows, dtype=np.int64)

    def _vectors(self, ids: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of this back end's prints: all of them, or those in ``ids``."""
        cols = select(blacklist_samples.c.id, blacklist_samples.c.vector).where(
            blacklist_samples.c.backend_id == self.engine.backend_id)
        out_ids: list[int] = []
        blobs: list[bytes] = []
        with self.db.connect() as conn:
            batches = [cols] if ids is None else [
                cols.where(blacklist_samples.c.id.in_(chunk)) for chunk in chunks(ids)]
            for stmt in batches:
                for sid, blob in conn.execute(stmt.order_by(blacklist_samples.c.id)):
                    out_ids.append(int(sid))
                    blobs.append(bytes(blob))
        dim = self.engine.dim
        vecs = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(-1, dim).astype(np.float32)
        return np.asarray(out_ids, dtype=np.int64), vecs

    def _open_index(self) -> VectorIndex:
        generation = self._read_generation()
        db_ids = self._db_ids()
        reason = ""
        try:
            index, meta = VectorIndex.load(self.index_dir)
            if meta.backend_id != self.engine.backend_id or meta.dim != self.engine.dim:
                raise IndexLoadError(f"built for {meta.backend_id!r}, engine is {self.engine.backend_id!r}")
            if (meta.count != len(db_ids) or meta.max_id != (int(db_ids.max()) if len(db_ids) else 0)
                    or meta.ids_checksum != ids_checksum(db_ids)):
                raise IndexLoadError("stale: the database changed behind the index")
            if meta.kind == "exact" and len(db_ids) > self.ann_threshold:
                raise IndexLoadError("size crossed the approximate-index threshold")
        except IndexLoadError as exc:
            reason = str(exc)
        else:
            self._generation = generation
            self.index_status = {"state": "loaded", "kind": index.kind, "count": len(index)}
            return index
        index = self._rebuild(generation, reason)
        return index

    def _rebuild(self, generation: int, reason: str) -> VectorIndex:
        ids, vecs = self._vectors()
        index = VectorIndex.build(self.engine.dim, ids, vecs, ann_threshold=self.ann_threshold,
                                  nprobe=self.nprobe)
        self._generation = generation
        index.save(self.index_dir, backend_id=self.engine.backend_id, generation=generation)
        self.index_status = {"state": "rebuilt", "reason": reason, "kind": index.kind, "count": len(index),
                             "recall": asdict(index.recall) if index.recall else None}
        log.info("blacklist index rebuilt (%s): %d prints, %s", reason, len(index), index.kind)
        return index

    def _persist(self, *, force: bool = False) -> None:
        if force or len(self.index) <= SYNC_SAVE_LIMIT:
            self.index.save(self.index_dir, backend_id=self.engine.backend_id, generation=self._generation)
            self._dirty = False
        else:
            self._dirty = True

    def _known_generation(self) -> int | None:
        """The listener's generation while it is healthy (no query), at least this process's own."""
        known = self.listener.generation() if self.listener is not None else None
        return None if known is None else max(known, self._generation)

    def _generation_now(self) -> int:
        """The generation to compare with: the listener's while it is healthy, else one query."""
        known = self._known_generation()
        return known if known is not None else self._read_generation()

    def refresh(self) -> None:
        """Bring the in-memory index up to the database's generation (cheap when nothing changed: no
        query at all while the listener is healthy, else one)."""
        if self._generation_now() == self._generation:
            return
        with self._sync:
            self._refresh_locked()

    def _refresh_locked(self) -> None:
        generation = self._read_generation()
        if generation == self._generation:
            return
        db_ids = self._db_ids()
        have = self.index.ids()
        extra = np.setdiff1d(have, db_ids)
        missing = np.setdiff1d(db_ids, have)
        if self.index.kind == "exact" and len(db_ids) > self.ann_threshold:
            self.index = self._rebuild(generation, "size crossed the approximate-index threshold")
            return
        if len(extra):
            self.index.remove(extra)
        if len(missing):
            ids, vecs = self._vectors(missing.tolist())
            if len(ids):
                self.index.add(ids, vecs)
        self._generation = generation
        self._persist(force=bool(len(extra)))

    def _apply(self, generation: int, *, add: tuple[int, np.ndarray] | None = None,
               remove: list[int] | None = None) -> None:
        """Apply this process's own committed change, or resync if other changes came in between."""
        with self._sync:
            if remove:
                self.index.remove(remove)
            if self._generation == generation - 1:
                # A resync that read the generation just before this commit may already hold the print.
                if add is not None and add[0] not in self.index:
                    self.index.add([add[0]], add[1])
                self._generation = generation
                self._persist(force=bool(remove))
            else:
                self._refresh_locked()
                if remove:
                    self._persist(force=True)

    def index_sync(self) -> dict[str, Any]:
        """Whether the searched index holds exactly this back end's stored prints (after a refresh);
        what ``/readyz`` reports, since a stale index silently misses enrolled fraudsters."""
        self.refresh()
        stored = np.sort(self._db_ids())
        searched = np.sort(np.asarray(self.index.ids(), dtype=np.int64))
        return {"in_sync": bool(np.array_equal(stored, searched)), "stored_prints": len(stored),
                "searchable_prints": len(searched), "generation": self._generation,
                "sync": "notify" if self._known_generation() is not None else "per_search"}

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        with self._sync:
            if self._dirty:
                self._persist(force=True)
