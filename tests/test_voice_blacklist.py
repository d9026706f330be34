"""The blacklist service with the real voice engine and real speech, on every configured database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from callvet.core import audit
from callvet.core.db import Database
from callvet.core.errors import Conflict, InvalidInput, NotFound
from callvet.core.settings import Settings
from callvet.voice.audio import AudioError
from callvet.voice.blacklist import Blacklist
from callvet.voice.engine import VoiceEngine, Voiceprint
from callvet.voice.index import SIDECAR_FILE
from callvet.voice.tables import blacklist_samples
from speech import espeak, to_wav_bytes
from sqlalchemy import delete, select

TEXTS = [
    "My name is John and I would like to apply for a credit card today please.",
    "I was born in nineteen eighty two and I live on Main Street in Springfield.",
    "The quick brown fox jumps over the lazy dog near the river bank at noon.",
]
FRAUD_A, FRAUD_B, GENUINE = "en-us+m3", "en+klatt", "en-us+f2"


def wav(voice: str, text_no: int) -> bytes:
    return to_wav_bytes(espeak(TEXTS[text_no], voice), 16000)


@pytest.fixture(scope="module")
def engine() -> VoiceEngine:
    return VoiceEngine.from_settings(Settings())


@pytest.fixture
def bl(db: Database, engine: VoiceEngine, tmp_path: Path) -> Iterator[Blacklist]:
    b = Blacklist(db, engine, tmp_path / "faiss")
    yield b
    b.close()


def enrol(bl: Blacklist, label: str, voice: str, text_no: int = 0) -> int:
    ident = bl.create_identity(label, f"{label} notes", "analyst:test")
    bl.add_sample(ident["id"], wav(voice, text_no), "analyst:test")
    return int(ident["id"])


def test_enrolled_voice_alarms_and_other_voice_does_not(bl: Blacklist) -> None:
    a = enrol(bl, "fraudster A", FRAUD_A)
    b = enrol(bl, "fraudster B", FRAUD_B)
    hit = bl.identify(wav(FRAUD_A, 1))
    assert hit.alarm and hit.matches[0].identity_id == a and hit.matches[0].label == "fraudster A"
    assert hit.matches[0].score >= hit.threshold and hit.net_speech_s >= 3.0
    assert [m.score for m in hit.matches] == sorted((m.score for m in hit.matches), reverse=True)
    assert {m.identity_id for m in hit.matches} == {a, b}
    assert bl.identify(wav(FRAUD_B, 2)).matches[0].identity_id == b
    miss = bl.identify(wav(GENUINE, 1))
    assert not miss.alarm and miss.matches[0].score < miss.threshold
    assert bl.identify_voiceprint(bl.engine.voiceprint(espeak(TEXTS[2], FRAUD_A)), top_k=1).matches[0] \
        .identity_id == a


def test_store_listing_duplicates_and_errors(bl: Blacklist, db: Database) -> None:
    a = enrol(bl, "fraudster A", FRAUD_A)
    second = bl.add_sample(a, wav(FRAUD_A, 1), "analyst:test")
    assert second["self_score"] is not None and second["self_score"] >= bl.engine.threshold
    assert second["possible_duplicate_of"] == []
    alias = bl.create_identity("alias of A", "", "analyst:other")
    res = bl.add_sample(alias["id"], wav(FRAUD_A, 2), "analyst:other")
    assert [d["identity_id"] for d in res["possible_duplicate_of"]] == [a]
    fresh = bl.create_identity("unrelated", "", "analyst:other")
    assert bl.add_sample(fresh["id"], wav(GENUINE, 0), "analyst:other")["possible_duplicate_of"] == []
    with pytest.raises(Conflict) as dup:
        bl.add_sample(a, wav(FRAUD_A, 1), "analyst:test")
    assert dup.value.code == "duplicate_sample"
    listed = {i["id"]: i for i in bl.list_identities()}
    assert listed[a]["samples"] == 2 and listed[alias["id"]]["samples"] == 1
    detail = bl.get_identity(a)
    assert detail["label"] == "fraudster A" and len(detail["prints"]) == 2
    assert all(p["searchable"] and len(p["sha256"]) == 64 for p in detail["prints"])
    assert "vector" not in json.dumps(detail)
    with pytest.raises(NotFound):
        bl.get_identity(99999)
    with pytest.raises(NotFound):
        bl.add_sample(99999, wav(FRAUD_A, 0), "analyst:test")
    with pytest.raises(InvalidInput) as bad_label:
        bl.create_identity("   ", "", "analyst:test")
    assert bad_label.value.code == "invalid_label"
    with pytest.raises(AudioError) as not_audio:
        bl.add_sample(a, b"this is not audio at all", "analyst:test")
    assert not_audio.value.code == "not_audio"
    hiss = (np.random.default_rng(0).standard_normal(16000 * 4) * 0.003).astype(np.float32)
    with pytest.raises(AudioError) as short:
        bl.identify(to_wav_bytes(hiss, 16000))
    assert short.value.code == "too_little_speech"
    assert bl.list_identities()[0]["samples"] == 2
    actions = [e["action"] for e in audit.query(db, target_type="blacklist_identity")]
    assert actions.count("blacklist.sample.add") == 4 and actions.count("blacklist.identity.create") == 3


def test_delete_removes_prints_from_db_index_and_disk(bl: Blacklist, db: Database, engine: VoiceEngine,
                                                       tmp_path: Path) -> None:
    a = enrol(bl, "fraudster A", FRAUD_A)
    b = enrol(bl, "fraudster B", FRAUD_B)
    with pytest.raises(InvalidInput) as no_reason:
        bl.delete_identity(a, "analyst:test", " ")
    assert no_reason.value.code == "reason_required"
    out = bl.delete_identity(a, "analyst:eve", "court order 17")
    assert out == {"id": a, "label": "fraudster A", "samples_removed": 1}
    res = bl.identify(wav(FRAUD_A, 1))
    assert not res.alarm and all(m.identity_id != a for m in res.matches)
    assert len(bl.index) == 1
    with pytest.raises(NotFound):
        bl.delete_identity(a, "analyst:eve", "again")
    entry = audit.query(db, target_type="blacklist_identity", target_id=str(a),
                        action="blacklist.identity.delete")[0]
    assert entry["actor"] == "analyst:eve" and entry["reason"] == "court order 17"
    reopened = Blacklist(db, engine, tmp_path / "faiss")
    assert reopened.index_status["state"] == "loaded" and len(reopened.index) == 1
    assert reopened.identify(wav(FRAUD_B, 1)).matches[0].identity_id == b


def test_other_process_changes_and_stale_or_foreign_index(bl: Blacklist, db: Database, engine: VoiceEngine,
                                                          tmp_path: Path) -> None:
    a = enrol(bl, "fraudster A", FRAUD_A)
    other = Blacklist(db, engine, tmp_path / "faiss")
    assert other.index_status["state"] == "loaded"
    b = enrol(other, "fraudster B", FRAUD_B)
    assert bl.identify(wav(FRAUD_B, 1)).matches[0].identity_id == b
    other.delete_identity(a, "analyst:test", "false positive")
    assert all(m.identity_id != a for m in bl.identify(wav(FRAUD_A, 1)).matches)
    assert len(bl.index) == 1

    with db.begin() as conn:
        conn.execute(delete(blacklist_samples))
    stale = Blacklist(db, engine, tmp_path / "faiss")
    assert stale.index_status["state"] == "rebuilt" and "stale" in stale.index_status["reason"]
    assert len(stale.index) == 0 and stale.identify(wav(FRAUD_B, 1)).matches == []

    enrol(stale, "fraudster C", FRAUD_A)
    sidecar = tmp_path / "faiss" / SIDECAR_FILE
    meta = json.loads(sidecar.read_text())
    meta["backend_id"] = "some-other-encoder"
    sidecar.write_text(json.dumps(meta))
    foreign = Blacklist(db, engine, tmp_path / "faiss")
    assert foreign.index_status["state"] == "rebuilt"
    assert "some-other-encoder" in foreign.index_status["reason"]
    assert len(foreign.index) == 1 and foreign.identify(wav(FRAUD_A, 1)).alarm


def _random_prints(db: Database, engine: VoiceEngine, n: int) -> None:
    """Prints written straight to the database the way another process would (generation bumped)."""
    from callvet.core.db import utcnow
    from callvet.voice.tables import blacklist_identities, blacklist_state
    from sqlalchemy import insert, update

    x = np.random.default_rng(3).standard_normal((n, engine.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with db.begin() as conn:
        ident = conn.execute(insert(blacklist_identities).values(
            label="synthetic", notes="", created_by="test", created_at=utcnow())
            .returning(blacklist_identities.c.id)).scalar_one()
        conn.execute(insert(blacklist_samples), [
            {"identity_id": ident, "backend_id": engine.backend_id, "dim": engine.dim,
             "vector": x[i].astype("<f4").tobytes(), "stats_mean": 0.0, "stats_std": 1.0,
             "net_speech_s": 3.0, "sha256": f"{i:064x}", "created_by": "test", "created_at": utcnow()}
            for i in range(n)])
        conn.execute(update(blacklist_state).where(blacklist_state.c.id == 1)
                     .values(generation=blacklist_state.c.generation + 1))


def test_crossing_the_threshold_switches_to_a_measured_ivf_index(db: Database, engine: VoiceEngine,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # the prints come from "another process" and the next search must see them: the per-search check
    # (on PostgreSQL the listener would see them a notification later, tests/test_blacklist_listen.py)
    monkeypatch.setenv("CALLVET_BLACKLIST_LISTEN", "0")
    small = Blacklist(db, engine, tmp_path / "ivf", ann_threshold=1000)
    a = enrol(small, "fraudster A", FRAUD_A)
    assert small.index.kind == "exact"
    _random_prints(db, engine, 1200)
    hit = small.identify(wav(FRAUD_A, 1))
    assert small.index.kind == "ivf" and len(small.index) == 1201
    assert hit.alarm and hit.matches[0].identity_id == a and hit.searched == 1201
    recall = small.index_status["recall"]
    assert recall["recall_at_1"] >= 0.98 and recall["queries"] == 200
    small.delete_identity(a, "analyst:test", "test")
    assert len(small.index) == 1200
    assert all(m.identity_id != a for m in small.identify(wav(FRAUD_A, 1)).matches)
    reopened = Blacklist(db, engine, tmp_path / "ivf", ann_threshold=1000)
    assert reopened.index_status["state"] == "loaded" and reopened.index.kind == "ivf"


def test_concurrent_adds_and_searches_keep_index_equal_to_db(bl: Blacklist, db: Database) -> None:
    from concurrent.futures import ThreadPoolExecutor

    idents = [bl.create_identity(f"f{i}", "", "analyst:test")["id"] for i in range(4)]
    voices = [FRAUD_A, FRAUD_B, GENUINE, "en-us+m7"]
    clips = [(idents[i], wav(voices[i], t)) for i in range(4) for t in range(2)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        adds = [pool.submit(bl.add_sample, ident, clip, "analyst:test") for ident, clip in clips]
        searches = [pool.submit(bl.identify, wav(FRAUD_A, 2)) for _ in range(4)]
        sample_ids = sorted(f.result()["sample_id"] for f in adds)
        assert all(s.result().net_speech_s >= 3.0 for s in searches)
    assert sorted(bl.index.ids().tolist()) == sample_ids
    assert bl.identify(wav(FRAUD_A, 2)).matches[0].identity_id == idents[0]


def test_trained_backend_uses_print_stats_and_a_backend_change_rebuilds(
        sqlite_db: Database, engine: VoiceEngine, tmp_path: Path) -> None:
    """A back end fitted here on other espeak speakers: AS-norm needs each print's cohort stats, and
    prints of the old (cosine) back end stop being searched until re-enrolled."""
    from callvet.voice.audio import Audio
    from callvet.voice.backend import BackendConfig, TrainingSet, fit_backend

    train_voices = ["en-us+m1", "en-us+m5", "en-us+f1", "en-us+f4", "en+klatt2", "en-gb+m2", "en-us+m7"]
    cosine = VoiceEngine(engine.encoder, backend=None, vad=engine.vad)
    emb = np.array([cosine.embedding(cosine.analyse(Audio(espeak(t, v), 16000)).speech)
                    for v in train_voices for t in TEXTS], dtype=np.float32)
    spk = np.repeat(train_voices, len(TEXTS))
    data = TrainingSet(emb, spk, np.zeros((len(emb), 0, emb.shape[1]), np.float32))
    backend = fit_backend(data, BackendConfig(nap_dim=0, asnorm_top_n=10, enrol_augment=False),
                          encoder_name=engine.encoder_name, encoder_sha256=engine.encoder.manifest["sha256"])
    trained = VoiceEngine(engine.encoder, backend=backend, vad=engine.vad)
    vecs = [backend.project_mean(e[None, :]) for e in emb]
    vps = [Voiceprint(v, backend.cohort_stats(v), 4.0) for v in vecs]
    same = [trained.score(vps[i], vps[j]) for i in range(len(vps)) for j in range(i) if spk[i] == spk[j]]
    diff = [trained.score(vps[i], vps[j]) for i in range(len(vps)) for j in range(i) if spk[i] != spk[j]]
    backend.threshold = float((np.mean(same) + np.mean(diff)) / 2)
    trained = VoiceEngine(engine.encoder, backend=backend, vad=engine.vad)
    assert trained.backend_id != cosine.backend_id

    old = Blacklist(sqlite_db, cosine, tmp_path / "faiss")
    a = enrol(old, "fraudster A", FRAUD_A)
    bl = Blacklist(sqlite_db, trained, tmp_path / "faiss")
    assert bl.index_status["state"] == "rebuilt" and cosine.backend_id in bl.index_status["reason"]
    assert len(bl.index) == 0 and bl.identify(wav(FRAUD_A, 1)).matches == []
    assert [p["searchable"] for p in bl.get_identity(a)["prints"]] == [False]
    assert bl.status()["unsearchable_prints_by_backend"] == {cosine.backend_id: 1}
    bl.add_sample(a, wav(FRAUD_A, 0), "analyst:test")
    b = enrol(bl, "fraudster B", FRAUD_B)
    hit = bl.identify(wav(FRAUD_A, 1))
    assert hit.alarm and hit.matches[0].identity_id == a and abs(hit.threshold - backend.threshold) < 1e-4
    assert bl.identify(wav(FRAUD_B, 2)).matches[0].identity_id == b
    miss = bl.identify(wav(GENUINE, 1))
    assert not miss.alarm
    with sqlite_db.connect() as conn:
        stats = conn.execute(select(blacklist_samples.c.stats_mean, blacklist_samples.c.stats_std)
                             .where(blacklist_samples.c.backend_id == trained.backend_id)).all()
    assert len(stats) == 2 and all(s.stats_std != 1.0 and s.stats_mean != 0.0 for s in stats)


def test_own_commit_already_picked_up_by_a_resync_is_not_added_twice(
        bl: Blacklist, db: Database, engine: VoiceEngine, tmp_path: Path) -> None:
    """Race: a resync read generation G, then ids that already include this thread's print of G+1."""
    enrol(bl, "fraudster A", FRAUD_A)
    other = Blacklist(db, engine, tmp_path / "other")
    b = enrol(other, "fraudster B", FRAUD_B)
    sample_id = other.get_identity(b)["prints"][0]["sample_id"]
    generation = bl._read_generation()
    bl._generation = generation - 1
    bl.index.add([sample_id], other.index.reconstruct(sample_id))
    bl._apply(generation, add=(sample_id, other.index.reconstruct(sample_id)))
    assert len(bl.index) == 2 and bl._generation == generation
    assert bl.identify(wav(FRAUD_B, 1)).matches[0].identity_id == b
