"""In-domain null from recent calls: thresholds that follow the traffic (callvet.voice.indomain).

Synthetic score distributions stand for a deployment whose callers come from a family the calibration
never saw: a few identities on the list are "close" to the traffic (innocent callers score higher
against them), the rest are as the calibration expects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from callvet.voice.calibration import Calibration, fit_calibration
from callvet.voice.indomain import (
    InDomainNull,
    adapted_operating_point,
    far_per_search,
    fit_indomain,
    fit_indomain_best,
)
from callvet.voice.tiers import TierConfig, operating_points


def _calibration() -> Calibration:
    rng = np.random.default_rng(1)
    null = rng.normal(0.0, 1.0, 200_000)
    tar = rng.normal(4.0, 1.0, 2000)
    return fit_calibration("bk-test", null, tar, np.full(len(null), 8.0), np.full(len(tar), 8.0),
                           target_scores_10s=tar, looks_gamma=0.0, prints_exponent=0.0)


def _traffic(rng: np.random.Generator, shape: tuple[int, int], close: np.ndarray) -> np.ndarray:
    """Innocent callers' scores against a list: identities in ``close`` score N(1.5, 1.4), the rest
    N(0, 1) (the calibration's null)."""
    s = rng.normal(0.0, 1.0, shape)
    s[:, close] = rng.normal(1.5, 1.4, (shape[0], int(close.sum())))
    return s


def _measured_far(rng: np.random.Generator, t: float, n: int, close: np.ndarray, searches: int) -> float:
    hits = 0
    for _ in range(searches // 2000):
        hits += int((_traffic(rng, (2000, n), close).max(axis=1) >= t).sum())
    return hits / (searches // 2000 * 2000)


def test_fit_needs_enough_calls_and_reads_the_best_of_list_scores() -> None:
    rng = np.random.default_rng(0)
    assert fit_indomain(rng.normal(size=(10, 5))) is None
    assert fit_indomain(np.zeros((30, 0))) is None
    s = rng.normal(0.0, 1.0, (400, 3))
    null = fit_indomain(s)
    assert null is not None and null.n_calls == 400 and null.identities == 3
    best_s = s.max(axis=1)
    assert null.mean == pytest.approx(float(best_s.mean()), abs=0.1)
    assert null.sd == pytest.approx(float(best_s.std()), rel=0.2)
    assert null.to_dict()["recent_calls"] == 400
    best = np.r_[s.max(axis=1), np.nan]
    again = fit_indomain_best(best, 3)
    assert again is not None and again.n_calls == 400 and again.mean == pytest.approx(null.mean)
    assert fit_indomain_best(best, 0) is None


def test_no_or_stale_traffic_keeps_the_calibration_threshold() -> None:
    cal = _calibration()
    base = cal.operating_point("alarm", 0.01, 50, 50).threshold
    op = adapted_operating_point(cal, None, "alarm", 0.01, 50, 50)
    assert op["threshold"] == pytest.approx(base, abs=1e-3) and op["in_domain"] is None
    stale = InDomainNull(9.0, 1.0, 100, 7)
    op = adapted_operating_point(cal, stale, "alarm", 0.01, 50, 50)
    assert op["threshold"] == pytest.approx(base, abs=1e-3) and op["in_domain"] is None


def test_lighter_traffic_never_lowers_the_threshold() -> None:
    cal = _calibration()
    rng = np.random.default_rng(2)
    for n in (10, 1000):
        base = cal.operating_point("alarm", 0.01, n, n).threshold
        lighter = fit_indomain(rng.normal(-2.0, 0.5, (300, n)))
        op = adapted_operating_point(cal, lighter, "alarm", 0.01, n, n)
        assert op["threshold"] == pytest.approx(base, abs=1e-3)
        assert op["in_domain"]["threshold"] < base and op["expected_far"] <= 0.0101


@pytest.mark.parametrize("n", [10, 50, 1000])
def test_close_identities_raise_the_threshold_to_the_target(n: int) -> None:
    """Calibration alone: far above 1 % per search once identities the traffic is close to are on the
    list. With 1,000 recent calls: within 2x of the target at every size."""
    cal = _calibration()
    rng = np.random.default_rng(n)
    close = np.zeros(n, bool)
    close[: max(3, n // 50)] = True
    null = fit_indomain(_traffic(rng, (1000, n), close))
    base = cal.operating_point("alarm", 0.01, n, n).threshold
    op = adapted_operating_point(cal, null, "alarm", 0.01, n, n)
    assert op["threshold"] > base and op["in_domain"]["recent_calls"] == 1000
    assert op["expected_far"] == pytest.approx(0.01, rel=0.02)
    assert far_per_search(cal, null, op["threshold"]) == pytest.approx(0.01, rel=0.02)
    assert _measured_far(rng, base, n, close, 20_000) > 0.03
    far = _measured_far(rng, op["threshold"], n, close, 40_000)
    assert 0.004 <= far <= 0.02, (n, far)


def test_operating_points_take_the_in_domain_null_for_both_tiers() -> None:
    cal = _calibration()
    rng = np.random.default_rng(5)
    close = np.zeros(20, bool)
    close[:3] = True
    null = fit_indomain(_traffic(rng, (1000, 20), close))
    cfg = TierConfig(0.01, 0.05, 6.0)
    plain = operating_points(cal, cfg, 20, 20, looks_ratio=4.0)
    adapted = operating_points(cal, cfg, 20, 20, looks_ratio=4.0, in_domain=null)
    for tier in ("alarm", "review"):
        assert adapted[tier]["threshold"] > plain[tier]["threshold"]
        assert adapted[tier]["calibration_threshold"] == pytest.approx(plain[tier]["threshold"], abs=1e-3)
        assert adapted[tier]["min_net_speech_s"] == plain[tier]["min_net_speech_s"]
    assert adapted["review"]["threshold"] < adapted["alarm"]["threshold"]


# -- the blacklist service: recent calls from the call-print store, every replica the same ----------------

@pytest.fixture(scope="module")
def engine() -> Any:
    from callvet.core.settings import Settings
    from callvet.voice.engine import VoiceEngine

    e = VoiceEngine.from_settings(Settings(openset_calibration=True))
    assert e.calibration is not None and e.calibration.cohort is not None
    return e


def _fill(db: Any, engine: Any, n: int, seed: int) -> list[np.ndarray]:
    """n identities of one print each (prints of development speech from the shipped cohort)."""
    from callvet.core.db import utcnow
    from callvet.voice.tables import blacklist_identities, blacklist_samples, blacklist_state
    from sqlalchemy import insert, update

    rng = np.random.default_rng(seed)
    cohort = engine.calibration.cohort
    out = []
    with db.begin() as conn:
        for i in range(n):
            iid = conn.execute(insert(blacklist_identities).values(
                label=f"fraud {seed}-{i}", notes="", created_by="test", created_at=utcnow())
                .returning(blacklist_identities.c.id)).scalar_one()
            v = cohort[rng.integers(len(cohort))].astype("<f4")
            st = engine.backend.cohort_stats(v)
            conn.execute(insert(blacklist_samples).values(
                identity_id=iid, backend_id=engine.backend_id, dim=engine.dim, vector=v.tobytes(),
                stats_mean=st[0], stats_std=st[1], net_speech_s=8.0, sha256=f"{seed}-{i}",
                created_by="test", created_at=utcnow()))
            out.append(v)
        conn.execute(update(blacklist_state).where(blacklist_state.c.id == 1)
                     .values(generation=blacklist_state.c.generation + 1))
    return out


def _calls(db: Any, engine: Any, near: list[np.ndarray], count: int, seed: int, net_s: float = 10.0) -> None:
    """``count`` stored call prints of other applicants whose voices are close to the listed ones (a
    family the calibration never saw: every caller sounds like someone on the list)."""
    from callvet.voice.callprints import Applicant, CallPrintStore
    from callvet.voice.engine import Voiceprint

    store = CallPrintStore(db, engine, calibration=None)
    rng = np.random.default_rng(seed)
    for i in range(count):
        base = near[i % len(near)]
        v = (base + rng.normal(0.0, 0.35 * float(np.std(base)), base.shape)).astype(np.float32)
        st = engine.backend.cohort_stats(v)
        store.upsert(f"c{seed}-{i}", Applicant(applicant_id=f"a{seed}-{i}"),
                     Voiceprint(v, (float(st[0]), float(st[1])), net_s))
    store.close()


def test_blacklist_thresholds_follow_recent_calls_on_every_replica(
        db: Any, engine: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from callvet.voice.blacklist import Blacklist

    monkeypatch.setenv("CALLVET_OPENSET_IN_DOMAIN", "1")
    # _fill writes behind the blacklist's back, as another process would; with the PostgreSQL listener
    # that change arrives a notification later (tests/test_blacklist_listen.py), and this test needs
    # each status to see it at once: the per-search check does that.
    monkeypatch.setenv("CALLVET_BLACKLIST_LISTEN", "0")
    bl = Blacklist(db, engine, tmp_path / "a")
    listed = _fill(db, engine, 5, seed=1)
    st = bl.status()
    assert st["in_domain"] == {"enabled": True, "active": False, "recent_calls": 0}
    plain = st["identify"]["alarm"]
    assert plain.get("in_domain") is None
    _calls(db, engine, listed, 19, seed=2)
    _calls(db, engine, listed, 4, seed=3, net_s=4.0)
    assert bl.status()["in_domain"]["active"] is False, "19 long calls (+4 too short to alarm) < 20"
    _calls(db, engine, listed, 40, seed=4)
    st = bl.status()
    dom = st["in_domain"]
    assert dom["active"] is True and dom["identities"] == 5
    assert dom["recent_calls"] == 50 - 4, "the sample stops at the checkpoint (ids <= 50), long calls only"
    for scope in ("identify", "call"):
        for tier in ("alarm", "review"):
            op = st[scope][tier]
            assert op["threshold"] >= op["calibration_threshold"]
            assert op["in_domain"]["recent_calls"] == dom["recent_calls"]
    alarm = st["call"]["alarm"]
    assert alarm["threshold"] > alarm["calibration_threshold"], "callers close to the list raise the bar"
    assert alarm["expected_far"] == pytest.approx(0.01, rel=0.05)
    assert st["threshold"] == st["identify"]["alarm"]["threshold"]
    other = Blacklist(db, engine, tmp_path / "b")
    assert other.status()["call"] == st["call"], "another replica computes the same thresholds"
    _calls(db, engine, listed, 5, seed=5)
    assert bl.status()["call"] == st["call"], "the sample only moves every 50 calls"
    from callvet.voice.callprints import CallPrintStore

    store = CallPrintStore(db, engine, calibration=None)
    bl.add_print(1, store.voiceprint("c4-0"), "analyst:test", call_id="c4-0")
    store.close()
    enrolled = bl.status()["in_domain"]
    assert enrolled["recent_calls"] == dom["recent_calls"] - 1, "an enrolled call is a fraudster, not traffic"
    _fill(db, engine, 1, seed=6)
    again = bl.status()
    assert again["in_domain"]["identities"] == 6 and again["identities"] == 6
    assert again["call"]["alarm"]["in_domain"]["identities"] == 6
    probe = bl.identify_voiceprint(_vp(engine, listed[0]), looks_ratio=bl.call_looks_ratio())
    assert probe.threshold == pytest.approx(again["call"]["alarm"]["threshold"], abs=1e-3)
    monkeypatch.delenv("CALLVET_OPENSET_IN_DOMAIN")
    off = Blacklist(db, engine, tmp_path / "c").status()
    assert off["in_domain"] is None and off["call"]["alarm"].get("in_domain") is None
    assert off["call"]["alarm"]["threshold"] == pytest.approx(again["call"]["alarm"]["calibration_threshold"])
    bl.close()
    other.close()


def _vp(engine: Any, v: np.ndarray) -> Any:
    from callvet.voice.engine import Voiceprint

    st = engine.backend.cohort_stats(v)
    return Voiceprint(v.astype(np.float32), (float(st[0]), float(st[1])), 10.0)
