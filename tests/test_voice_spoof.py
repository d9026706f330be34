"""The spoof countermeasure's back end: training and calibration on small data made here, the shipped
artifact and its manifest, the operating point, ``callvet spoof eval`` and its DET plot."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from callvet.core.errors import InvalidInput
from callvet.core.settings import get_settings
from callvet.voice.audio import resample
from callvet.voice.spoof import detector as detmod
from callvet.voice.spoof.replay import simulate_replay
from callvet.voice.spoof.train import components, det_curve, eer, featurize, fit_cm, save_cm

from tests.speech import ASTERISK_DIR, asterisk, espeak, phone_channel, to_wav_bytes

pytest.importorskip("sklearn")

PROMPTS_A = ["vm-intro", "vm-goodbye", "vm-password", "vm-newuser", "vm-options", "vm-nobox"]
PROMPTS_B = ["vm-forward", "vm-mismatch", "vm-saved", "vm-reenterpassword", "vm-tocallnum", "vm-message"]
TEXTS = ["Please confirm the last four digits of your card number now.",
         "I was born on the fourth of July, nineteen eighty one, in Leeds.",
         "My employer is a logistics company and I earn four thousand a month."]


@pytest.fixture(scope="module")
def aasist() -> Any:
    from callvet.models import aasist as builder

    models_dir = get_settings().models_dir
    if not builder.is_built(models_dir):
        builder.build(models_dir)
    return detmod._Aasist(models_dir / "aasist")


def _recordings() -> list[tuple[Any, ...]]:
    """Tiny two-source set: Asterisk prompts (bona fide), espeak voices (synthetic), simulated replays
    of Asterisk prompts; all through a phone line at 8 kHz."""
    recs: list[tuple[Any, ...]] = []

    def add(rid: str, spoof: bool, kind: str, group: str, source: str, x: np.ndarray, sr: int) -> None:
        y = resample(phone_channel(resample(x, sr, 8000), 8000, seed=len(recs)), 8000, 8000)
        recs.append((rid, spoof, kind, group, source, lambda y=y: (y, None)))

    for half, prompts, voices in (("a", PROMPTS_A, ["en-us+m3", "en+f4"]),
                                  ("b", PROMPTS_B, ["en-us+f2", "en+m5"])):
        for p in prompts[:4]:
            add(f"bona:{p}", False, "bonafide", "asterisk", f"ast-{half}", asterisk(p), 8000)
        for i, v in enumerate(voices):
            for t in TEXTS[:2]:
                add(f"tts:{v}:{t[:8]}", True, "synthetic", "espeak", f"tts-{half}", espeak(t, v), 16000)
            add(f"replay:{prompts[4 + i]}", True, "replay", "replay", f"rep-{half}",
                simulate_replay(asterisk(prompts[4 + i]), 8000, seed=i), 8000)
    return recs


@pytest.fixture(scope="module")
def trained(aasist: Any) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
    feats = featurize(_recordings(), aasist.score, threads=2)
    folds = (["ast-a", "tts-a", "rep-a"], ["ast-b", "tts-b", "rep-b"])
    cm, rep = fit_cm(feats, folds=folds, n_components=4, seed=0, meta={"trained_on": ["asterisk"]})
    return feats, cm, rep


def test_calibrated_operating_point(trained: Any, aasist: Any, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    feats, cm, rep = trained
    bona = cm["bona_scores"]
    assert len(bona) == sum(not s for s in feats.spoof)
    for ffr in (0.05, 0.25):
        det = detmod.SpoofDetector(aasist, cm, ffr=ffr)
        assert det.threshold == pytest.approx(np.quantile(bona, 1 - ffr))
        assert np.mean(bona > det.threshold) <= ffr + 1 / len(bona)
    assert detmod.SpoofDetector(aasist, cm, ffr=0.01).threshold >= detmod.SpoofDetector(
        aasist, cm, ffr=0.25).threshold
    # The fused score is the balanced logistic log-odds: oriented spoof-up and reproduced by decide().
    det = detmod.SpoofDetector(aasist, cm, ffr=0.1)
    comps = components(feats, det.gmms)
    fused = comps @ det.fusion_w + det.fusion_b
    y = np.asarray(feats.spoof)
    assert fused[y].mean() > fused[~y].mean()
    for c, f in zip(comps, fused, strict=True):
        r = det.decide(c)
        assert r.score == pytest.approx(f) and r.flag == (f > det.threshold)
        assert (r.kind is None) == (not r.flag)
    assert 0.0 <= rep["cross_fitted_eer"]["fused"] <= 1.0
    # The artifact round-trips through load_detector, which reads CALLVET_SPOOF_FFR.
    path = tmp_path / "cm.npz"
    save_cm(cm, path)
    detmod._cache.clear()
    monkeypatch.setenv("CALLVET_SPOOF_FFR", "0.2")
    loaded = detmod.load_detector(get_settings().models_dir, cm_file=path)
    assert loaded.ffr == 0.2 and loaded.threshold == pytest.approx(np.quantile(bona, 0.8))
    monkeypatch.setenv("CALLVET_SPOOF_FFR", "0.7")
    with pytest.raises(InvalidInput):
        detmod.load_detector(get_settings().models_dir, cm_file=path)
    monkeypatch.setenv("CALLVET_SPOOF_FFR", "lots")
    with pytest.raises(InvalidInput):
        detmod.load_detector(get_settings().models_dir, cm_file=path)
    detmod._cache.clear()


def test_eer_and_det_curve() -> None:
    assert eer(np.array([0.0, 1.0, 2.0]), np.array([3.0, 4.0, 5.0])) == 0.0
    assert eer(np.array([3.0, 4.0]), np.array([0.0, 1.0])) == 1.0
    rng = np.random.default_rng(0)
    b, s = rng.normal(0, 1, 4000), rng.normal(2, 1, 4000)
    assert eer(b, s) == pytest.approx(0.1587, abs=0.015)  # Phi(-1): equal-variance normals 2 sd apart
    ffr, miss, thr = det_curve(b, s)
    assert np.all(np.diff(ffr) <= 0) and np.all(np.diff(miss) >= 0) and len(thr) == len(ffr)


def test_shipped_artifact_matches_its_manifest() -> None:
    manifest = json.loads(detmod.CM_FILE.with_suffix(".json").read_text())
    assert hashlib.sha256(detmod.CM_FILE.read_bytes()).hexdigest() == manifest["sha256"]
    with np.load(detmod.CM_FILE, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        assert len(z["bona_scores"]) >= 50
    from callvet.voice.spoof.corpus import GROUPS

    trained_on = set(meta["trained_on"])
    assert trained_on <= set(GROUPS["train"])
    held_out = set(GROUPS["test"]) - {"replay"}
    assert not trained_on & held_out
    assert set(manifest["test"]["groups"]) >= held_out


def test_watch_scores_one_window_per_check(aasist: Any, trained: Any) -> None:
    _, cm, _ = trained
    det = detmod.SpoofDetector(aasist, cm, ffr=0.1)
    calls = []
    orig = aasist.logits

    def counting(w: np.ndarray) -> np.ndarray:
        calls.append(w.shape)
        return orig(w)

    aasist.logits = counting
    try:
        watch = det.watch()
        assert watch.check() is None
        x = resample(espeak(TEXTS[0], "en-us+m3"), 16000, 16000)
        for i in range(0, len(x), 320):
            watch.add(x[i:i + 320])
        first = watch.check()
        assert first is not None and calls == [(1, detmod.NB_SAMP)]
        assert watch.check() is first and len(calls) == 1
    finally:
        aasist.logits = orig


def test_eval_cli_prints_figures_and_writes_det_plot(tmp_path: Path, trained: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from callvet.cli import app
    from typer.testing import CliRunner

    _, cm, _ = trained
    path = tmp_path / "cm.npz"
    save_cm(cm, path)
    monkeypatch.setattr(detmod, "CM_FILE", path)
    detmod._cache.clear()
    d = tmp_path / "eval"
    (d / "bonafide").mkdir(parents=True)
    (d / "spoof" / "synthetic").mkdir(parents=True)
    for i, p in enumerate(["vm-intro", "vm-goodbye", "vm-saved"]):
        (d / "bonafide" / f"{i}.wav").write_bytes(to_wav_bytes(phone_channel(asterisk(p), 8000), 8000))
    for i, v in enumerate(["en-us+m3", "en+klatt"]):
        x = phone_channel(espeak(TEXTS[2], v, sample_rate=8000), 8000, seed=i)
        (d / "spoof" / "synthetic" / f"{i}.wav").write_bytes(to_wav_bytes(x, 8000))
    (d / "spoof" / "broken.wav").write_bytes(b"RIFF not really")
    res = CliRunner().invoke(app, ["spoof", "eval", str(d), "--json", "--ffr", "0.1"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):])
    assert out["bonafide"] == 3 and out["spoof"] == 2 and out["skipped"] == 1
    assert 0.0 <= out["eer"] <= 1.0 and "miss_synthetic" in out and out["ffr_target"] == 0.1
    assert (d / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = CliRunner().invoke(app, ["spoof", "eval", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "bad_corpus" in res.output
    detmod._cache.clear()
    assert ASTERISK_DIR.is_dir()
