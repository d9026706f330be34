"""Open-set calibration: false alarms per search stay at target as the blacklist grows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from callvet.voice.calibration import (
    COHORT_FILE,
    Calibration,
    SNorm,
    find_calibration,
    fit_calibration,
    fit_llr,
    fit_tail,
)


def _calibration(null: np.ndarray, *, gamma: float = 0.0, exponent: float = 0.5) -> Calibration:
    rng = np.random.default_rng(1)
    tar = rng.normal(4.0, 1.0, 2000)
    return fit_calibration("bk-test", null, tar, np.full(len(null), 8.0), np.full(len(tar), 8.0),
                           target_scores_10s=tar, looks_gamma=gamma, prints_exponent=exponent)


def _measured_far(sample: callable, t: float, n: int, searches: int, rng: np.random.Generator) -> float:
    hits = 0
    done = 0
    while done < searches:
        b = min(2000, searches - done)
        hits += int((sample(rng, (b, n)).max(axis=1) >= t).sum())
        done += b
    return hits / searches


@pytest.mark.parametrize("dist", ["normal", "skewed"])
def test_false_alarms_per_search_stay_at_target_as_the_list_grows(dist: str) -> None:
    """Null fitted on 40k per-comparison scores; searches of N independent innocent comparisons."""
    if dist == "normal":
        def sample(r: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
            return r.normal(-1.0, 1.5, shape)
    else:  # a Gumbel-like right skew (what max-of-cohort style scores look like)
        def sample(r: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
            return r.normal(0.0, 1.0, shape) + 0.3 * r.exponential(1.0, shape)
    rng = np.random.default_rng(0)
    cal = _calibration(sample(rng, (40000,)))
    thresholds = []
    for n in (1, 10, 100, 1000):
        op = cal.operating_point("alarm", 0.01, n, n)
        thresholds.append(op.threshold)
        assert op.expected_far == pytest.approx(0.01, rel=1e-3)
        far = _measured_far(sample, op.threshold, n, 20000, rng)
        assert 0.005 <= far <= 0.02, (n, far)
    assert thresholds == sorted(thresholds) and thresholds[-1] > thresholds[0]


def test_a_per_comparison_threshold_alarms_most_innocent_callers_at_size_100() -> None:
    """The bug the calibration fixes: 1 % per comparison is 1 - 0.99^N per search."""
    rng = np.random.default_rng(2)
    null = rng.normal(0, 1, 40000)
    t_comparison = float(np.quantile(null, 0.99))
    far = _measured_far(lambda r, s: r.normal(0, 1, s), t_comparison, 100, 5000, rng)
    assert far == pytest.approx(1 - 0.99 ** 100, abs=0.03)
    cal = _calibration(null)
    assert cal.threshold(0.01, 100) > t_comparison + 1.0


def test_prints_and_looks_raise_the_threshold_and_review_sits_below_alarm() -> None:
    cal = _calibration(np.random.default_rng(3).normal(0, 1, 20000), gamma=0.4, exponent=0.5)
    one = cal.operating_point("alarm", 0.01, 50, 50)
    three = cal.operating_point("alarm", 0.01, 50, 150)
    call = cal.operating_point("alarm", 0.01, 50, 150, looks_ratio=40.0)
    review = cal.operating_point("review", 0.05, 50, 150, looks_ratio=40.0)
    assert three.n_effective == pytest.approx(50 * 3 ** 0.5)
    assert call.n_effective == pytest.approx(50 * 3 ** 0.5 * (1 + 0.4 * np.log(40.0)))
    assert one.threshold < three.threshold < call.threshold
    assert review.threshold < call.threshold
    assert review.expected_detection >= call.expected_detection
    assert review.to_dict()["tier"] == "review" and 0 < call.to_dict()["expected_far"] <= 0.0101


def test_tail_and_inverse_agree_and_validate() -> None:
    cal = _calibration(np.random.default_rng(4).normal(0, 1, 5000))
    for p in (0.3, 0.05, 1e-3, 1e-6):
        assert cal.p_comparison(cal.t_for_p(p)) == pytest.approx(p, rel=0.05)
    with pytest.raises(ValueError):
        fit_tail(np.zeros(10))
    with pytest.raises(ValueError):
        cal.threshold(1.5, 10)


def test_llr_carries_less_evidence_for_short_speech() -> None:
    """Short probes separate less; the duration-aware LLR gives the same score less weight."""
    rng = np.random.default_rng(5)
    dur = np.concatenate([np.full(4000, 1.5), np.full(4000, 10.0)])
    sep = np.where(dur < 5, 1.0, 3.0)
    tar = rng.normal(sep, 1.0)
    non = rng.normal(0.0, 1.0, len(dur))
    w = fit_llr(tar, non, dur, dur)
    cal = _calibration(non)
    cal.llr_weights = w
    assert abs(float(cal.llr(2.5, 1.5))) < abs(float(cal.llr(2.5, 10.0)))
    assert float(cal.llr(3.0, 10.0)) > 0 > float(cal.llr(-1.0, 10.0))


def test_snorm_takes_out_a_probe_side_offset() -> None:
    """A probe whose scores are all shifted (an unseen voice family) is standardised by its cohort."""
    rng = np.random.default_rng(6)
    cohort = rng.normal(size=(300, 16)).astype(np.float32)
    models = rng.normal(size=(20, 16)).astype(np.float32)
    probe = rng.normal(size=(1, 16)).astype(np.float32)

    def plain(raw: np.ndarray, ps: np.ndarray, ms: np.ndarray) -> np.ndarray:
        return raw

    def shifted(raw: np.ndarray, ps: np.ndarray, ms: np.ndarray) -> np.ndarray:
        return raw + 7.0 * (ps[0] == 1.0)

    sn0 = SNorm(cohort, np.zeros((300, 2)), plain, top_n=50)
    sn1 = SNorm(cohort, np.zeros((300, 2)), shifted, top_n=50)
    raw = (probe @ models.T)[0]
    m0 = sn0.moments(probe, np.zeros((1, 2)))
    m1 = sn1.moments(probe, np.array([[1.0, 0.0]]))
    assert m1[0, 0] == pytest.approx(m0[0, 0] + 7.0) and m1[0, 1] == pytest.approx(m0[0, 1])
    mm = sn0.moments(models, np.zeros((20, 2)))
    a = SNorm.apply(raw, m0, mm)
    b = SNorm.apply(raw + 7.0, m1, mm)
    # the probe side is standardised exactly; the model side keeps half of the shift (symmetric s-norm)
    assert np.allclose(b - a, 0.5 * 7.0 / mm[:, 1])


def test_save_load_with_cohort_and_backend_check(tmp_path: Path) -> None:
    cal = _calibration(np.random.default_rng(7).normal(0, 1, 2000))
    cal.cohort = np.random.default_rng(8).normal(size=(40, 8)).astype(np.float32)
    cal.meta["_cohort_stats"] = np.tile([-1.0, 1.0], (40, 1))
    cal.save(tmp_path)
    back = Calibration.load(tmp_path)
    assert back is not None and back.cohort is not None and back.cohort.shape == (40, 8)
    assert back.threshold(0.01, 10) == pytest.approx(cal.threshold(0.01, 10))
    assert "_cohort_stats" not in json.loads((tmp_path / "calibration.json").read_text())["meta"]
    assert find_calibration(tmp_path, "bk-test") is not None
    assert find_calibration(tmp_path, "bk-other") is None
    (tmp_path / COHORT_FILE).write_bytes(b"tampered")
    assert find_calibration(tmp_path, "bk-test") is None
    with pytest.raises(ValueError):
        Calibration.load(tmp_path)


def test_per_family_tails_keep_a_heavy_family_at_target_where_the_pooled_null_does_not() -> None:
    """Two caller families: most innocents' scores N(0, 1), one family's N(1, 1.6) (callers against
    their own family-mates). The pooled null under-protects the heavy family; the per-family (minimax)
    tails keep every family at or under target as N grows, and the long-speech tail is used only for
    long probes."""
    rng = np.random.default_rng(5)
    light = rng.normal(0.0, 1.0, 30000)
    heavy = rng.normal(1.0, 1.6, 6000)
    null = np.concatenate([light, heavy])
    groups = np.array(["light"] * len(light) + ["heavy"] * len(heavy))
    tar = rng.normal(5.0, 1.0, 500)
    dur = np.where(rng.random(len(null)) < 0.5, 2.0, 9.0)
    common = dict(target_scores_10s=tar, looks_gamma=0.0, prints_exponent=0.0)
    pooled = fit_calibration("bk", null, tar, dur, np.full(len(tar), 9.0), **common)
    fam = fit_calibration("bk", null, tar, dur, np.full(len(tar), 9.0), null_groups=groups, **common)
    assert set(fam.group_tails) == {"light", "heavy"} and set(fam.group_tails_long) == {"light", "heavy"}
    assert pooled.tail_long and fam.tail_long
    for n in (10, 100, 1000):
        t_pool = pooled.operating_point("alarm", 0.01, n, n).threshold
        t_fam = fam.operating_point("alarm", 0.01, n, n, long=True).threshold
        assert t_fam > t_pool
        far_heavy_pooled = _measured_far(lambda r, s: r.normal(1.0, 1.6, s), t_pool, n, 20000, rng)
        far_heavy = _measured_far(lambda r, s: r.normal(1.0, 1.6, s), t_fam, n, 20000, rng)
        far_light = _measured_far(lambda r, s: r.normal(0.0, 1.0, s), t_fam, n, 20000, rng)
        assert far_heavy_pooled > 0.02, (n, far_heavy_pooled)
        assert 0.005 <= far_heavy <= 0.02 and far_light <= 0.01, (n, far_heavy, far_light)
    # a calibration saved and loaded keeps the family tails
    d = {k: v for k, v in fam.__dict__.items() if k != "cohort"}
    again = Calibration(**json.loads(json.dumps(d)))
    assert again.t_for_p(1e-4, long=True) == pytest.approx(fam.t_for_p(1e-4, long=True))
