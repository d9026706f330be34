"""What the per-search generation check costs at load, against LISTEN/NOTIFY sync, in the same run (issue 17).

Two :class:`~callvet.voice.blacklist.Blacklist` instances on one PostgreSQL schema with the same prints:
``per_search`` (``CALLVET_BLACKLIST_LISTEN=0``: one generation query before each search, plus one for the
operating points' counts) and ``notify`` (the LISTEN/NOTIFY listener healthy: no generation query).
Calls alternate between them one by one (the order flipped each time), so both see the same machine
load. Two loads:

- search: ``identify_voiceprint`` of a real probe print (what a live call does on each look, and the
  search part of every identify request), the path where the check weighs most;
- identify: the whole request from WAV bytes (decode, VAD, embedding, search), what ``POST
  /v1/voiceprint/identify`` does once authenticated.

Generation queries per search are counted with a SQLAlchemy event on each instance's own engine.

    CALLVET_TEST_DATABASE_URL=postgresql+psycopg://... nice -n 5 .venv/bin/python bench/search/listen.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from callvet.core.db import Database, utcnow
from callvet.core.settings import Settings
from callvet.voice.blacklist import Blacklist
from callvet.voice.engine import VoiceEngine
from callvet.voice.tables import blacklist_identities, blacklist_samples
from sqlalchemy import create_engine, event, insert, text

TEXT = ("My account was opened at the branch on the high street. I usually pay my bills on the first of "
        "every month and I travel a lot for work.")


def _fill(db: Database, engine: VoiceEngine, n: int) -> None:
    """``n`` prints of random unit vectors (the search cost does not depend on their values), one
    identity per 4 prints, written as another process would (the trigger bumps nothing: nothing else
    syncs yet)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, engine.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with db.begin() as conn:
        idents = [conn.execute(insert(blacklist_identities).values(
            label=f"bench {i}", notes="", created_by="bench", created_at=utcnow())
            .returning(blacklist_identities.c.id)).scalar_one() for i in range((n + 3) // 4)]
        conn.execute(insert(blacklist_samples), [
            {"identity_id": idents[i // 4], "backend_id": engine.backend_id, "dim": engine.dim,
             "vector": x[i].astype("<f4").tobytes(), "stats_mean": 0.0, "stats_std": 1.0,
             "net_speech_s": 5.0, "sha256": f"{i:064x}", "created_by": "bench", "created_at": utcnow()}
            for i in range(n)])


class Count:
    def __init__(self, db: Database) -> None:
        self.generation = 0
        self.all = 0
        event.listen(db.engine, "before_cursor_execute", self._seen)

    def _seen(self, _c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        self.all += 1
        if "blacklist_state" in statement:
            self.generation += 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prints", type=int, default=2000)
    ap.add_argument("--searches", type=int, default=400, help="searches per round")
    ap.add_argument("--identifies", type=int, default=12, help="whole identify requests per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    url = os.environ["CALLVET_TEST_DATABASE_URL"]
    from speech import espeak, to_wav_bytes  # tests/ on sys.path (PYTHONPATH=tests)

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    dbs = {m: Database(url, schema=schema) for m in ("per_search", "notify")}
    try:
        dbs["notify"].create_schema()
        engine = VoiceEngine.from_settings(Settings())
        _fill(dbs["notify"], engine, args.prints)
        wav = to_wav_bytes(espeak(TEXT, "en-us+m3"), 16000)
        probe = engine.voiceprint(engine.analyse(engine.decode(wav)).speech)
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["CALLVET_BLACKLIST_LISTEN"] = "0"
            per = Blacklist(dbs["per_search"], engine, Path(tmp) / "a")
            os.environ["CALLVET_BLACKLIST_LISTEN"] = "1"
            lis = Blacklist(dbs["notify"], engine, Path(tmp) / "b")
            assert lis.listener is not None and lis.listener.wait_healthy(10)
            bls = {"per_search": per, "notify": lis}
            counts = {m: Count(dbs[m]) for m in bls}
            times: dict[str, dict[str, list[float]]] = {m: {"search": [], "identify": []} for m in bls}
            for b in bls.values():  # warm both (caches, pools)
                for _ in range(50):
                    b.identify_voiceprint(probe)
                b.identify(wav)
            before = {m: (c.generation, c.all) for m, c in counts.items()}
            load0 = Path("/proc/loadavg").read_text().split()[:3]
            # one call of each in turn, the order flipped every time: load drift hits both alike
            n_search, n_ident = args.rounds * args.searches, args.rounds * args.identifies
            for i in range(n_search + n_ident):
                kind = "search" if i < n_search else "identify"
                for m in (list(bls) if i % 2 == 0 else list(reversed(bls))):
                    b = bls[m]
                    t0 = time.perf_counter()
                    if kind == "search":
                        b.identify_voiceprint(probe)
                    else:
                        b.identify(wav)
                    times[m][kind].append(time.perf_counter() - t0)
            with dbs["per_search"].connect() as conn:  # the check alone, for scale
                q = []
                for _ in range(200):
                    t0 = time.perf_counter()
                    conn.execute(text("SELECT generation FROM blacklist_state WHERE id = 1")).scalar()
                    q.append(time.perf_counter() - t0)
            load1 = Path("/proc/loadavg").read_text().split()[:3]
            per_call = n_search + n_ident
            print(f"prints {args.prints} dim {engine.dim}: {n_search} searches and {n_ident} identify "
                  f"requests each, interleaved; load average {' '.join(load0)} -> {' '.join(load1)}")
            print(f"the generation query alone: p50 {1000 * statistics.median(q):.3f} ms")
            for m in bls:
                g = (counts[m].generation - before[m][0]) / per_call
                n_all = (counts[m].all - before[m][1]) / per_call
                st, it = times[m]["search"], times[m]["identify"]
                print(f"{m:>10}: search p50 {1000 * statistics.median(st):7.3f} ms "
                      f"({len(st) / sum(st):7.1f}/s)"
                      f"  identify p50 {1000 * statistics.median(it):7.1f} ms ({len(it) / sum(it):5.2f}/s)"
                      f"  generation queries per call {g:.2f}  all queries per call {n_all:.2f}")
            for kind in ("search", "identify"):
                rate = {m: len(times[m][kind]) / sum(times[m][kind]) for m in bls}
                ratio = rate["notify"] / rate["per_search"]
                print(f"ratio notify / per_search ({kind}, requests/s): {ratio:.3f}")
            per.close()
            lis.close()
    finally:
        for d in dbs.values():
            d.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
