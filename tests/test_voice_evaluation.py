"""Evaluation metrics on known score sets, and the eval command on a tiny espeak tree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from callvet.voice.evaluation import Trials, compute_metrics, det_points, eer, min_dcf, pool_trials, scan_tree
from speech import espeak, phone_channel, to_wav_bytes

VOICES = ["en-us+m2", "en-us+m4", "en-us+f3", "en-us+f5", "en-us+klatt"]
TEXTS = [
    "Please confirm the delivery address for the new card before Friday.",
    "My instalment loan was approved last week and the money arrived.",
    "We walked along the river and watched the boats go by.",
    "Could you call me back tomorrow about the payment schedule?",
]


def test_eer_and_min_dcf_on_known_scores() -> None:
    assert eer(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    assert eer(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    rng = np.random.default_rng(0)
    tar, non = rng.normal(2, 1, 20000), rng.normal(0, 1, 20000)
    assert eer(tar, non) == pytest.approx(0.1587, abs=0.01)
    assert 0 < min_dcf(tar, non) <= 1.0
    assert min_dcf(np.array([2.0]), np.array([0.0])) == 0.0


def test_eer_with_tied_scores_is_the_crossing_not_an_end_of_the_staircase() -> None:
    assert eer(np.zeros(5), np.zeros(7)) == pytest.approx(0.5)
    assert eer(np.full(3, 0.7), np.full(3, 0.7)) == pytest.approx(0.5)
    # half the targets tie with half the non-targets: the crossing lies on the tied segment
    assert eer(np.array([1.0, 1.0, 0.5, 0.5]), np.array([0.5, 0.5, 0.0, 0.0])) == pytest.approx(0.25)
    _, pm, pf = det_points(np.zeros(4), np.zeros(4))
    assert list(pm) == [0.0, 1.0] and list(pf) == [1.0, 0.0]


def _trials() -> Trials:
    # probes: a, a, b, x (unknown); models: a, b
    s = np.array([[0.9, 0.1], [0.6, 0.7], [0.2, 0.8], [0.75, 0.3]])
    known = np.array([True, True, True, False])
    return Trials(s, np.array(["a", "a", "b", "x"]), np.array(["a", "b"]), known, np.ones(4),
                  {"a": "g1", "b": "g1", "x": "g2"})


def test_top1_open_set_and_groups() -> None:
    m = compute_metrics(_trials(), threshold=0.65)
    assert m["top1"] == pytest.approx(2 / 3)
    assert m["n_target_trials"] == 3 and m["n_nontarget_trials"] == 5
    assert m["fa_at_95_detection"] == 1.0
    assert m["open_set_fa_at_threshold"] == 1.0 and m["miss_at_threshold"] == pytest.approx(1 / 3)
    assert set(m["by_group"]) == {"g1", "g2"}


def test_pooled_folds_ignore_cross_fold_cells() -> None:
    t = _trials()
    pooled = pool_trials([t, t])
    assert pooled.scores.shape == (8, 4)
    m = compute_metrics(pooled)
    assert m["n_target_trials"] == 6 and m["n_nontarget_trials"] == 10
    assert m["top1"] == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    clean, phone = tmp_path_factory.mktemp("clean"), tmp_path_factory.mktemp("phone")
    for v in VOICES:
        name = "espeak_" + v.split("+")[1]
        for root in (clean, phone):
            (root / name).mkdir()
        for i, t in enumerate(TEXTS):
            x = espeak(t, v) * 0.7
            (clean / name / f"u{i}.wav").write_bytes(to_wav_bytes(x, 16000))
            (phone / name / f"u{i}.wav").write_bytes(to_wav_bytes(phone_channel(x, 16000, seed=i), 16000))
    return clean, phone


def test_eval_command_writes_report_and_det_plot(trees: tuple[Path, Path], tmp_path: Path) -> None:
    from callvet.cli import app
    from typer.testing import CliRunner

    clean, phone = trees
    out, png = tmp_path / "r.json", tmp_path / "det.png"
    res = CliRunner().invoke(app, [
        "voiceprint", "eval", str(clean), "--test-dir", str(phone), "--enroll", "2", "--unknown-fraction",
        "0.2", "--seed", "1", "--json", str(out), "--plot", str(png), "--backend", "none",
    ])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    for key in ("eer", "min_dcf", "top1", "fa_at_95_detection", "by_group", "n_models", "backend_id",
                "threshold", "open_set_fa_at_threshold"):
        assert key in r
    assert r["n_speakers"] == 5 and r["n_models"] == 4 and r["by_group"].keys() == {"espeak"}
    assert r["n_target_trials"] == 8 and r["n_unknown_probes"] == 4
    assert 0.0 <= r["eer"] <= 1.0 and r["top1"] > 0.25
    assert r["skipped_files"] == []
    assert r["skipped_files"] == []
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "EER" in res.output


def test_eval_rejects_a_non_tree(tmp_path: Path) -> None:
    from callvet.cli import app
    from callvet.core.errors import InvalidInput
    from typer.testing import CliRunner

    with pytest.raises(InvalidInput):
        scan_tree(tmp_path)
    res = CliRunner().invoke(app, ["voiceprint", "eval", str(tmp_path), "--backend", "none"])
    assert res.exit_code == 2 and "bad_corpus" in res.output


def test_undecodable_files_are_skipped_and_listed(tmp_path: Path) -> None:
    from callvet.core.settings import Settings
    from callvet.voice.engine import VoiceEngine
    from callvet.voice.evaluation import embed_set

    (tmp_path / "spk_a").mkdir()
    (tmp_path / "spk_a" / "good.wav").write_bytes(to_wav_bytes(espeak(TEXTS[0], VOICES[0]), 16000))
    (tmp_path / "spk_a" / "silent.wav").write_bytes(to_wav_bytes(np.zeros(16000), 16000))
    engine = VoiceEngine.from_settings(Settings(), backend_dir=False)
    for _ in range(2):  # second pass comes from the cache
        s = embed_set(engine, scan_tree(tmp_path), cache_dir=tmp_path / "cache")
        assert [u.name for u in s.items] == ["good.wav"] and s.emb.shape == (1, engine.encoder.dim)
        assert len(s.skipped) == 1 and s.skipped[0]["file"].endswith("silent.wav")


def test_subset_and_training_set_keep_held_out_speakers_out() -> None:
    from callvet.voice.evaluation import EmbeddedSet, Utterance, training_set

    items = [Utterance(s, f"{s}-{i}", Path(f"/x/{s}/{i}.wav")) for s in ("a", "b", "c") for i in range(2)]
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((6, 4)).astype(np.float32)
    aug = rng.standard_normal((6, 2, 4)).astype(np.float32)
    es = EmbeddedSet(items, emb, aug, [emb[i:i + 1] for i in range(6)], np.arange(6, dtype=float))
    sub = es.subset({"a", "c"})
    assert list(sub.speakers) == ["a", "a", "c", "c"] and np.array_equal(sub.emb, emb[[0, 1, 4, 5]])
    assert np.array_equal(sub.net_s, [0, 1, 4, 5]) and np.array_equal(sub.partials[2], emb[4:5])
    ts = training_set([es, es.subset({"b", "c"})], {"b"})
    assert list(ts.speaker) == ["b"] * 4 and ts.emb.shape == (4, 4) and ts.aug.shape == (4, 2, 4)
