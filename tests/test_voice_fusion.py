"""The fused voiceprint (GE2E + SE-Res2Net50): one print space whose score is the sum of both LLRs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from callvet.core.db import Database
from callvet.core.errors import InvalidInput, Unavailable
from callvet.voice.backend import BackendConfig, TrainingSet, find_backend
from callvet.voice.fusion import (
    FusedBackend,
    FusedEncoder,
    fit_fused_backend,
    fuse_embeddings,
    fuse_partials,
    train_fused_backend,
)

CFG = BackendConfig(nap_dim=1, plda_dim=10)


def _speakers(rng: np.random.Generator, d: int, n_spk: int = 24, per: int = 6) -> tuple[np.ndarray, ...]:
    means = rng.normal(size=(n_spk, d))
    emb = np.repeat(means, per, axis=0) + 0.5 * rng.normal(size=(n_spk * per, d))
    aug = emb[:, None, :] + 0.2 * rng.normal(size=(n_spk * per, 2, d))
    return emb.astype(np.float32), np.repeat([f"s{i}" for i in range(n_spk)], per), aug.astype(np.float32)


def _data(seed: int = 0) -> TrainingSet:
    rng = np.random.default_rng(seed)
    e1, spk, a1 = _speakers(rng, 16)
    e2, _, a2 = _speakers(rng, 24)
    return TrainingSet(fuse_embeddings([e1, e2]), spk, fuse_embeddings([a1, a2]))


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_fused_score_is_the_weighted_sum_of_the_parts_llrs() -> None:
    data = _data()
    fb = fit_fused_backend(data, [16, 24], CFG, [0.3, 0.7])
    x, y = data.emb[:5], data.emb[6:20]
    px, py = fb.project(x), fb.project(y)
    assert px.shape == (5, fb.dim) == (5, 20)
    sx, sy = fb.cohort_stats(px), fb.cohort_stats(py)
    fused = np.stack([fb.calibrate(px[i] @ py.T, sx[i], sy) for i in range(len(px))])
    want = np.zeros_like(fused)
    for b, sl, w in zip(fb.parts, (slice(0, 16), slice(16, 40)), (0.3, 0.7), strict=True):
        qx, qy = b.project(_l2(x[:, sl])), b.project(_l2(y[:, sl]))
        a, c = b.cohort_stats(qx), b.cohort_stats(qy)
        want += w * np.stack([b.calibrate(qx[i] @ qy.T, a[i], c) for i in range(len(qx))])
    np.testing.assert_allclose(fused, want, rtol=1e-4, atol=1e-3)
    single = fb.cohort_stats(px[0])
    assert isinstance(single, tuple) and single[0] == pytest.approx(sx[0, 0])
    with pytest.raises(InvalidInput, match="40-d input"):
        fb.project(np.zeros((1, 39), np.float32))


def test_fused_backend_separates_speakers_it_never_saw() -> None:
    train, test = _data(0), _data(1)
    fb = train_fused_backend(train, [16, 24], CFG, [0.5, 0.5], folds=3)
    assert np.isfinite(fb.threshold) and fb.meta["calibration_impostor_trials"] > 0
    models = np.stack([fb.project_mean(test.emb[i * 6:i * 6 + 3]) for i in range(24)])
    probes = fb.project(test.emb[3::6])
    ms, ps = fb.cohort_stats(models), fb.cohort_stats(probes)
    s = np.stack([fb.calibrate(probes[i] @ models.T, ps[i], ms) for i in range(24)])
    assert (s.argmax(axis=1) == np.arange(24)).mean() > 0.9


def test_fused_backend_round_trips_and_refuses_a_damaged_part(tmp_path: Path) -> None:
    fb = fit_fused_backend(_data(), [16, 24], CFG, [0.5, 0.5], encoder_name="a+b", encoder_sha256="f" * 64)
    fb.save(tmp_path / "fb")
    back = FusedBackend.load(tmp_path / "fb")
    assert back.id == fb.id and back.id.startswith("a+b:ffffffffffff:fu-") and back.weights == [0.5, 0.5]
    np.testing.assert_allclose(back.project(_data().emb[:3]), fb.project(_data().emb[:3]), rtol=1e-5)

    class Enc:
        name, manifest = "a+b", {"sha256": "f" * 64}

    assert find_backend(Enc(), tmp_path / "fb").id == fb.id
    Enc.manifest = {"sha256": "0" * 64}
    assert find_backend(Enc(), tmp_path / "fb") is None, "a back end for another encoder build is refused"
    manifest = json.loads((tmp_path / "fb" / "manifest.json").read_text())
    manifest["weights"] = [0.9, 0.1]
    (tmp_path / "fb" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Unavailable, match="does not match"):
        FusedBackend.load(tmp_path / "fb")
    npz = tmp_path / "fb" / "part-1" / "backend.npz"
    npz.write_bytes(npz.read_bytes()[:-8])
    with pytest.raises(Unavailable):
        FusedBackend.load(tmp_path / "fb")


def test_fused_windows_pair_the_same_share_of_speech() -> None:
    rng = np.random.default_rng(0)
    fine, coarse = _l2(rng.normal(size=(7, 4))), _l2(rng.normal(size=(3, 6)))
    rows = fuse_partials([fine, coarse])
    assert rows.shape == (7, 10)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)
    paired = [int(np.argmax(coarse @ (r[4:] * np.sqrt(2)))) for r in rows]
    assert paired == [0, 0, 0, 1, 1, 2, 2]
    swapped = rows[:, [4, 5, 6, 7, 8, 9, 0, 1, 2, 3]]
    np.testing.assert_allclose(fuse_partials([coarse, fine]), swapped, rtol=1e-6)
    with pytest.raises(InvalidInput):
        fuse_partials([fine, coarse[:0]])


def test_fused_encoder_on_real_speech() -> None:
    from callvet.core.settings import Settings
    from callvet.voice.encoder import load_encoder
    from speech import espeak

    settings = Settings()
    enc = load_encoder(settings.models_dir, "ge2e+res2net")
    assert isinstance(enc, FusedEncoder) and enc.dim == 256 + 512 and enc.dims == [256, 512]
    assert enc.manifest["sha256"] != load_encoder(settings.models_dir, "res2net+ge2e").manifest["sha256"]
    x = espeak("My account was opened at the branch on the high street last year.", "en-us+m3")
    e = enc.embed(x)
    assert e.shape == (768,) and np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)
    g = load_encoder(settings.models_dir, "ge2e").embed(x)
    np.testing.assert_allclose(e[:256] * np.sqrt(2), g, atol=1e-5)
    parts = enc.embed_partials(x)
    assert parts.shape[1] == 768 and len(parts) == len(enc.parts[0].embed_partials(x))
    with pytest.raises(InvalidInput):
        load_encoder(settings.models_dir, "ge2e+ge2e")


def test_prints_of_another_back_end_are_reported_for_reenrolment(sqlite_db: Database, tmp_path: Path) -> None:
    """After a back-end change old prints stay stored but unsearched; status names the identities left
    with no searchable print, and the CLI's identify refuses with that, not with "empty blacklist"."""
    from callvet.core.db import utcnow
    from callvet.core.settings import Settings
    from callvet.voice.blacklist import Blacklist
    from callvet.voice.engine import VoiceEngine
    from callvet.voice.tables import blacklist_samples
    from speech import espeak, to_wav_bytes
    from sqlalchemy import insert

    engine = VoiceEngine.from_settings(Settings())
    bl = Blacklist(sqlite_db, engine, tmp_path / "faiss")
    old = bl.create_identity("enrolled before the change", "", "analyst:test")["id"]
    both = bl.create_identity("enrolled again", "", "analyst:test")["id"]
    with sqlite_db.begin() as conn:
        for ident in (old, both):
            conn.execute(insert(blacklist_samples).values(
                identity_id=ident, backend_id="ge2e:0123456789ab:bk-old", dim=200,
                vector=np.zeros(200, "<f4").tobytes(), stats_mean=0.0, stats_std=1.0, net_speech_s=5.0,
                sha256=f"old-{ident}", created_by="test", created_at=utcnow()))
    text = "My account was opened at the branch on the high street, and I pay my bills on time."
    bl.add_sample(both, to_wav_bytes(espeak(text, "en-us+m3"), 16000), "analyst:test")
    st = bl.status()
    r = st["reenrolment"]
    assert r["required"] and r["backend_id"] == engine.backend_id
    assert r["unsearchable_prints"] == 2
    assert r["unsearchable_prints_by_backend"] == {"ge2e:0123456789ab:bk-old": 2}
    assert r["identities_with_unsearchable_prints"] == 2 and r["identity_ids_not_searchable"] == [old]
    assert "original recordings" in r["action"] and st["searchable_prints"] == 1
    detail = bl.get_identity(old)
    assert [p["searchable"] for p in detail["prints"]] == [False]
    bl.close()
