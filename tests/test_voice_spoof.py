"""The spoof countermeasure's back end: cues, the leave-one-family-out protocol, calibration and the
operating point, the shipped artifact and its builder, ``callvet spoof eval`` and its DET plot.

Recordings are made here (Asterisk prompts, espeak-ng voices, simulated replays, simulated lines);
nothing reads the development corpus."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from callvet.core.errors import InvalidInput, Unavailable
from callvet.core.settings import get_settings
from callvet.voice.spoof import detector as detmod
from callvet.voice.spoof import heldout, train
from callvet.voice.spoof.cues import CUE_NAMES, N_CUES, cues, pitch_track
from callvet.voice.spoof.replay import simulate_replay

from tests.speech import ASTERISK_DIR, asterisk, espeak, phone_channel, to_wav_bytes

pytest.importorskip("sklearn")

PROMPTS = sorted(p.stem for p in ASTERISK_DIR.glob("vm-*.wav"))[:48]
VOICES = ["en-us+m3", "en+f4", "en-us+f2", "en+m5", "en-us+klatt", "en+m1", "en-us+f3", "en+m7"]
TEXTS = ["Please confirm the last four digits of your card number now.",
         "I was born on the fourth of July, nineteen eighty one, in Leeds.",
         "My employer is a logistics company and I earn four thousand a month."]


def _lines(x8k: np.ndarray, rid: str) -> np.ndarray:
    from callvet.voice.spoof import corpus

    return np.stack([cues(corpus.phone(x8k, 8000, c, seed=corpus.hash_seed(f"{rid}:{c}")))
                     for c in range(heldout.LINES)])


@pytest.fixture(scope="module")
def rows() -> heldout.Rows:
    """Four folds, each its own Asterisk prompts (bona fide), espeak voices and replays of its own
    prompts, every recording on every line."""
    r = heldout.Rows()
    xs = []
    for k in range(len(heldout.FOLDS)):
        mine = PROMPTS[12 * k: 12 * k + 12]
        recs: list[tuple[str, str, str, np.ndarray]] = []
        recs += [(f"bona:{p}", "bonafide", f"ast{k}", asterisk(p)) for p in mine[:6]]
        recs += [(f"tts:{v}:{i}", "synthetic", f"esp{k}", espeak(TEXTS[i % 3], v, sample_rate=8000))
                 for i, v in enumerate(VOICES[2 * k: 2 * k + 2] * 2)]
        recs += [(f"rep:{p}", "replay", f"rep{k}", simulate_replay(asterisk(p), 8000, seed=i))
                 for i, p in enumerate(mine[6:10])]
        for rid, kind, group, x in recs:
            r.ids.append(rid), r.kind.append(kind), r.group.append(group), r.fold.append(k)
            xs.append(_lines(x, rid))
    r.x = np.stack(xs)
    return r


@pytest.fixture(scope="module")
def backend(rows: heldout.Rows) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    return train.fit_backend(rows, meta={"trained_on": ["test"]})


def test_pitch_tracker_finds_f0_and_cues_separate_steady_from_jittery_voicing() -> None:
    sr, f0 = 8000, 150.0
    t = np.arange(int(1.5 * sr)) / sr
    rng = np.random.default_rng(0)

    def voiced(jitter: float) -> np.ndarray:
        # jitter: a random walk of log-F0 (semitone-scale wobble), 0 = a perfectly steady tone.
        walk = rng.normal(0, jitter, len(t)).cumsum() / np.sqrt(len(t)) if jitter else np.zeros(len(t))
        f = f0 * 2 ** (walk / 12)
        phase = 2 * np.pi * np.cumsum(f) / sr
        return sum(np.sin(h * phase) / h for h in range(1, 8)).astype(np.float32)

    track, period, _ = pitch_track(voiced(0.0))
    v = track[track > 0]
    assert len(v) > 0.8 * len(track) and np.median(v) == pytest.approx(f0, rel=0.02)
    assert period[track > 0].mean() > 0.9
    steady, jittery = cues(voiced(0.0)), cues(voiced(40.0))
    step = CUE_NAMES.index("f0_step_med")
    assert steady.shape == (N_CUES,) and np.all(np.isfinite(steady))
    assert jittery[step] > 3 * steady[step]
    with pytest.raises(InvalidInput):
        cues(np.zeros(8000))
    with pytest.raises(InvalidInput):
        cues(np.full(8000, np.nan))


def test_lofo_never_trains_on_the_held_out_fold_or_its_lines(rows: heldout.Rows,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[set[int], set[int]]] = []
    real = train._train_matrix

    def spy(r: heldout.Rows, folds: Any, banned: set[int], cols: np.ndarray) -> Any:
        seen.append((set(folds), set(banned)))
        return real(r, folds, banned, cols)

    monkeypatch.setattr(train, "_train_matrix", spy)
    out = train.lofo(rows, ffr=0.1)
    assert set(out["folds"]) == {f.family for f in heldout.FOLDS}
    # Every training matrix of the run for outer fold k excludes k's recordings and k's lines.
    per_outer = len(seen) // len(heldout.FOLDS)
    for k, fold in enumerate(heldout.FOLDS):
        for folds, banned in seen[k * per_outer:(k + 1) * per_outer]:
            assert k not in folds and set(fold.lines) <= banned
    groups = out["groups"]
    assert {g for g in groups if g.startswith("ast")} == {f"ast{k}" for k in range(4)}
    assert all("false_flag_rate" in groups[f"ast{k}"] and "miss_rate" in groups[f"esp{k}"]
               for k in range(4))
    assert 0.0 <= out["pooled"]["eer"] <= 1.0


def test_calibration_and_operating_point(rows: heldout.Rows, backend: Any, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cm, rep = backend
    bona = cm["bona_scores"]
    assert len(bona) == rep["genuine_oof"] == sum(k == "bonafide" for k in rows.kind)
    assert rep["C"] in train.C_GRID and cm["cal"].shape == (2, 2)
    # Platt slopes are positive: a higher raw log-odds means more likely that kind of spoof.
    assert np.all(cm["cal"][:, 0] > 0)
    for ffr in (0.05, 0.25):
        det = detmod.SpoofDetector(cm, ffr=ffr)
        assert det.threshold == pytest.approx(np.quantile(bona, 1 - ffr))
        assert np.mean(bona > det.threshold) <= ffr + 1 / len(bona)
    det = detmod.SpoofDetector(cm, ffr=0.1)
    x = rows.x[:, 0]
    score, kind_idx = train.score_rows(cm, x)
    spoof = rows.spoof
    assert score[spoof].mean() > score[~spoof].mean()
    for c, s, j in zip(x, score, kind_idx, strict=True):
        r = det.decide(c)
        llr = det.llrs(c)
        assert r.score == pytest.approx(s) == pytest.approx(llr.max())
        assert r.flag == (s > det.threshold) and (r.kind is None) == (not r.flag)
        if r.flag:
            assert r.kind == train.KINDS[j]
    # The artifact round-trips through load_detector, which reads CALLVET_SPOOF_FFR.
    _write(cm, tmp_path)
    detmod._cache.clear()
    monkeypatch.setenv("CALLVET_SPOOF_FFR", "0.2")
    loaded = detmod.load_detector(get_settings().models_dir, directory=tmp_path)
    assert loaded.ffr == 0.2 and loaded.threshold == pytest.approx(np.quantile(bona, 0.8))
    for bad in ("0.7", "lots"):
        monkeypatch.setenv("CALLVET_SPOOF_FFR", bad)
        with pytest.raises(InvalidInput):
            detmod.load_detector(get_settings().models_dir, directory=tmp_path)
    monkeypatch.delenv("CALLVET_SPOOF_FFR")
    (tmp_path / "cm.npz").write_bytes((tmp_path / "cm.npz").read_bytes()[:-10])
    with pytest.raises(Unavailable):
        detmod.load_detector(get_settings().models_dir, directory=tmp_path)
    detmod._cache.clear()


def _write(cm: dict[str, np.ndarray], d: Path) -> None:
    import hashlib

    d.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(d / "cm.npz", **cm)
    digest = hashlib.sha256((d / "cm.npz").read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps({"sha256": digest}))


def test_eer_and_det_curve() -> None:
    assert train.eer(np.array([0.0, 1.0, 2.0]), np.array([3.0, 4.0, 5.0])) == 0.0
    assert train.eer(np.array([3.0, 4.0]), np.array([0.0, 1.0])) == 1.0
    rng = np.random.default_rng(0)
    b, s = rng.normal(0, 1, 4000), rng.normal(2, 1, 4000)
    assert train.eer(b, s) == pytest.approx(0.1587, abs=0.015)  # Phi(-1): normals 2 sd apart
    ffr, miss, thr = train.det_curve(b, s)
    assert np.all(np.diff(ffr) <= 0) and np.all(np.diff(miss) >= 0) and len(thr) == len(ffr)


def test_shipped_artifact_matches_its_manifest_and_was_measured_held_out() -> None:
    from callvet.models import spoof as builder

    models_dir = get_settings().models_dir
    assert builder.is_built(models_dir)
    d = detmod.backend_dir(models_dir)
    manifest = json.loads((d / "manifest.json").read_text())
    det = detmod.SpoofDetector(detmod.read_backend(d))
    assert len(det.bona_scores) >= 100
    families = {f.family for f in heldout.FOLDS}
    assert set(manifest["heldout"]["folds"]) == families
    assert set(manifest["peer_lfcc_stats_only"]["folds"]) == families
    assert {g for f in heldout.FOLDS for g in f.bona} <= set(manifest["heldout"]["groups"])
    assert manifest["independent"]["pooled"]["n_genuine"] >= 50
    # Every bona fide group and synthesiser family is scored by a model that never saw it.
    assert set(manifest["training"]["folds"]) == set(range(len(heldout.FOLDS)))


def test_models_builder_copies_and_repairs(tmp_path: Path) -> None:
    from callvet.models import spoof as builder

    assert not builder.is_built(tmp_path)
    files = builder.build(tmp_path)
    assert builder.is_built(tmp_path) and {p.name for p in files} == {"cm.npz", "manifest.json"}
    assert builder.build(tmp_path) == []
    npz = detmod.backend_dir(tmp_path) / "cm.npz"
    npz.write_bytes(b"corrupt")
    assert not builder.is_built(tmp_path)
    builder.build(tmp_path)
    assert builder.is_built(tmp_path)
    shutil.rmtree(tmp_path / "backend")


def test_watch_scores_one_window_per_check(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cm, _ = backend
    det = detmod.SpoofDetector(cm, ffr=0.1)
    windows: list[int] = []
    real = det.components
    monkeypatch.setattr(det, "components", lambda x: windows.append(len(x)) or real(x))
    watch = det.watch()
    assert watch.check() is None
    x = espeak(TEXTS[0], "en-us+m3")
    for i in range(0, len(x), 320):
        watch.add(x[i:i + 320])
    first = watch.check()
    assert first is not None and windows == [min(len(x), detmod.NB_SAMP)]
    assert watch.check() is first and len(windows) == 1
    watch.add(x[:16000])
    second = watch.check()
    assert second is not None and len(windows) == 2 and watch.checks == 2


def test_eval_cli_prints_figures_and_writes_det_plot(tmp_path: Path, backend: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from callvet.cli import app
    from typer.testing import CliRunner

    cm, _ = backend
    models = tmp_path / "models"
    _write(cm, detmod.backend_dir(models))
    monkeypatch.setenv("CALLVET_MODELS_DIR", str(models))
    get_settings.cache_clear()
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
    try:
        res = CliRunner().invoke(app, ["spoof", "eval", str(d), "--json", "--ffr", "0.1"])
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout[res.stdout.index("{"):])
        assert out["bonafide"] == 3 and out["spoof"] == 2 and out["skipped"] == 1
        assert 0.0 <= out["eer"] <= 1.0 and "miss_synthetic" in out and out["ffr_target"] == 0.1
        assert out["threshold"] == pytest.approx(np.quantile(cm["bona_scores"], 0.9), abs=1e-4)
        assert (d / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        res = CliRunner().invoke(app, ["spoof", "eval", str(tmp_path / "nowhere")])
        assert res.exit_code == 2 and "bad_corpus" in res.output
    finally:
        get_settings.cache_clear()
        detmod._cache.clear()
