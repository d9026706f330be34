"""The channel-robust back end: the maths on controlled data, then train/load on a tiny espeak corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from callvet.core.errors import Unavailable
from callvet.core.settings import Settings
from callvet.voice.backend import (
    Backend,
    BackendConfig,
    TrainingSet,
    find_backend,
    fit_backend,
    speaker_folds,
)
from callvet.voice.engine import VoiceEngine
from speech import espeak, phone_channel, to_wav_bytes

VOICES = ["en-us+m1", "en-us+m3", "en-us+m7", "en-us+f1", "en-us+f2", "en-us+f4"]
TEXTS = [
    "Please confirm the delivery address for the new card before Friday morning.",
    "My instalment loan was approved last week, and the money arrived yesterday.",
    "We walked along the river and watched the boats until the sun went down.",
    "Could you call me back tomorrow afternoon about the payment schedule?",
]


def _synthetic(seed: int = 0, n_spk: int = 30, per: int = 6, d: int = 32) -> tuple[TrainingSet, np.ndarray]:
    """Speakers on random means; each utterance shifted along one shared 'channel' direction."""
    channel = np.random.default_rng(123).normal(size=d)
    rng = np.random.default_rng(seed)
    channel /= np.linalg.norm(channel)
    means = rng.normal(size=(n_spk, d))
    emb, spk, aug = [], [], []
    for s in range(n_spk):
        for _ in range(per):
            x = means[s] + 0.3 * rng.normal(size=d)
            emb.append(x)
            spk.append(f"s{s}")
            aug.append([x + 3.0 * channel + 0.1 * rng.normal(size=d)])
    return TrainingSet(np.array(emb, np.float32), np.array(spk), np.array(aug, np.float32)), channel


def test_nap_wccn_make_the_channel_within_speaker_variance() -> None:
    data, _ = _synthetic()
    b = fit_backend(data, BackendConfig(nap_dim=1, asnorm_top_n=0))
    test, _ = _synthetic(seed=1)
    clean = test.emb[::6]
    phone = test.aug[::6, 0]
    raw_same = np.mean(np.sum(_l2(clean) * _l2(phone), axis=1))
    proj_same = np.mean(np.sum(b.project(clean) * b.project(phone), axis=1))
    assert proj_same > 0.95 > raw_same
    plain = fit_backend(data, BackendConfig(nap_dim=0, wccn=False, asnorm_top_n=0))
    assert np.mean(np.sum(plain.project(clean) * plain.project(phone), axis=1)) < proj_same


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_asnorm_is_symmetric_z_normalisation() -> None:
    data, _ = _synthetic()
    b = fit_backend(data, BackendConfig(asnorm_top_n=10, plda_dim=0))
    v = b.project(data.emb[:3])
    st = b.cohort_stats(v)
    assert st.shape == (3, 2) and np.all(st[:, 1] > 0)
    raw = np.array([0.5, 0.2])
    out = b.calibrate(raw, (0.1, 0.2), np.array([[0.3, 0.1], [0.0, 0.5]]))
    expect = 0.5 * ((raw - np.array([0.3, 0.0])) / np.array([0.1, 0.5]) + (raw - 0.1) / 0.2)
    assert out == pytest.approx(expect)
    assert isinstance(b.cohort_stats(v[0]), tuple)


def test_plda_scores_are_the_two_covariance_llr_through_inner_products() -> None:
    data, _ = _synthetic()
    b = fit_backend(data, BackendConfig(plda_dim=16))
    test, _ = _synthetic(seed=2)
    models = np.stack([b.project_mean(test.emb[i:i + 3]) for i in range(0, 60, 6)])
    probes = b.project(test.aug[5:60:6, 0])
    assert models.shape == (10, b.dim) and b.dim == 16
    ms, ps = b.cohort_stats(models), b.cohort_stats(probes)
    assert np.all(ms[:, 1] == 1.0)
    llr = np.stack([b.calibrate(probes[i] @ models.T, ps[i], ms) for i in range(10)])
    # explicit x'Qx + y'Qy + 2x'Py in the PCA space
    z = lambda v: (v - b.plda["mu"]) @ b.plda["v"]  # noqa: E731
    zm = z(_l2(np.stack([b._stage1(test.emb[i:i + 3]).mean(0) for i in range(0, 60, 6)])))
    zp = z(b._stage1(test.aug[5:60:6, 0]))
    lt = b.plda["lt"].astype(np.float64)
    p = lt @ lt.T
    q = lt @ b.plda["qv"] @ lt.T
    qz = lambda a: np.einsum("ij,jk,ik->i", a, q, a)  # noqa: E731
    expect = qz(zp)[:, None] + qz(zm)[None, :] + 2 * zp @ p @ zm.T
    assert llr == pytest.approx(expect, rel=1e-3, abs=1e-3)
    # channel-shifted probes still find their own speaker
    assert np.mean(np.argmax(llr, axis=1) == np.arange(10)) >= 0.9


def test_speaker_folds_are_disjoint_and_stratified() -> None:
    spk = [f"a{i}" for i in range(9)] + [f"b{i}" for i in range(6)]
    folds = speaker_folds(spk, 3, strata={s: s[0] for s in spk})
    assert sorted(np.concatenate(folds).tolist()) == sorted(spk)
    assert all(sum(s.startswith("b") for s in f) == 2 for f in folds)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    for v in VOICES:
        d = root / v.replace("+", "_").replace("-", "")
        d.mkdir()
        for i, t in enumerate(TEXTS):
            x = espeak(t, v)
            if i % 2:
                x = phone_channel(x, 16000, seed=i)
            (d / f"u{i}.wav").write_bytes(to_wav_bytes(x * 0.8, 16000))
    return root


@pytest.fixture(scope="module")
def trained(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from callvet.cli import app
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("backend")
    res = CliRunner().invoke(app, ["voiceprint", "train-backend", str(tiny_corpus), "--out", str(out),
                                   "--folds", "2", "--cache", str(out / "cache")])
    assert res.exit_code == 0, res.output
    return out


def test_train_backend_command_stores_a_loadable_keyed_backend(trained: Path, tiny_corpus: Path) -> None:
    manifest = json.loads((trained / "manifest.json").read_text())
    engine = VoiceEngine.from_settings(Settings(), backend_dir=trained)
    assert engine.backend is not None
    assert manifest["encoder"] == engine.encoder_name
    assert manifest["encoder_sha256"] == engine.encoder.manifest["sha256"]
    assert manifest["n_speakers"] == len(VOICES) and manifest["config"]["target_far"] == 0.01
    assert engine.backend_id == manifest["id"] and engine.threshold == manifest["threshold"]
    assert np.isfinite(engine.threshold)
    prints = {}
    for d in sorted(tiny_corpus.iterdir()):
        files = sorted(d.iterdir())
        speech = [engine.analyse(engine.decode(f.read_bytes())).speech for f in files]
        prints[d.name] = (engine.voiceprint(np.concatenate(speech[:2]), enrol=True),
                          engine.voiceprint(np.concatenate(speech[2:])))
    names = list(prints)
    same = [engine.score(prints[n][0], prints[n][1]) for n in names]
    diff = [engine.score(prints[a][0], prints[b][1]) for a in names for b in names if a != b]
    assert np.mean(same) > np.mean(diff) + 1.0
    assert prints[names[0]][0].vector.shape == (engine.dim,)


def test_backend_for_another_encoder_build_is_refused(trained: Path, tmp_path: Path) -> None:
    engine = VoiceEngine.from_settings(Settings(), backend_dir=False)
    b = Backend.load(trained)
    b.encoder_sha256 = "0" * 64
    b.save(tmp_path / "other")
    assert find_backend(engine.encoder, tmp_path / "other") is None
    assert find_backend(engine.encoder, tmp_path / "nothing-here") is None


def test_corrupt_backend_is_unavailable(trained: Path, tmp_path: Path) -> None:
    b = Backend.load(trained)
    b.save(tmp_path / "bk")
    npz = tmp_path / "bk" / "backend.npz"
    npz.write_bytes(npz.read_bytes()[:-10])
    with pytest.raises(Unavailable):
        Backend.load(tmp_path / "bk")
