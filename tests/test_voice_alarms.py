"""Alarm and review tiers, thresholds that follow the blacklist, and short speech, on real audio.

The engine is the shipped one (back end + the committed open-set calibration under
models/artifacts/backend/ge2e); the speech is made here (espeak-ng voices, Asterisk's human prompts).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from callvet.core.db import Database, utcnow
from callvet.core.settings import Settings
from callvet.voice.audio import AudioError
from callvet.voice.blacklist import Blacklist, IdentifyResult, Match
from callvet.voice.call.scoring import verdict_dict
from callvet.voice.engine import VoiceEngine
from callvet.voice.tables import blacklist_identities, blacklist_samples, blacklist_state
from speech import espeak, to_wav_bytes
from sqlalchemy import insert, update

TEXTS = [
    "My name is John and I would like to apply for a credit card today please.",
    "I was born in nineteen eighty two and I live on Main Street in Springfield.",
    "The quick brown fox jumps over the lazy dog near the river bank at noon.",
    "Please send the statement to my new address before the end of the month.",
]
FRAUD = ["en-us+m3", "en+klatt", "en-gb+f3"]


@pytest.fixture(scope="module")
def engine() -> VoiceEngine:
    e = VoiceEngine.from_settings(Settings(openset_calibration=True))
    assert e.calibration is not None, "the shipped calibration must load with the shipped back end"
    return e


@pytest.fixture
def bl(sqlite_db: Database, engine: VoiceEngine, tmp_path: Path) -> Iterator[Blacklist]:
    b = Blacklist(sqlite_db, engine, tmp_path / "faiss")
    yield b
    b.close()


def _enrol(bl: Blacklist, voice: str, texts: list[int]) -> int:
    ident = bl.create_identity(voice, "", "analyst:test")
    for t in texts:
        bl.add_sample(ident["id"], to_wav_bytes(espeak(TEXTS[t], voice), 16000), "analyst:test")
    return int(ident["id"])


def _fill(db: Database, engine: VoiceEngine, n: int, seed: int) -> None:
    """n identities of one print each straight into the database (as another replica would)."""
    rng = np.random.default_rng(seed)
    cohort = engine.calibration.cohort
    assert cohort is not None
    with db.begin() as conn:
        for i in range(n):
            iid = conn.execute(insert(blacklist_identities).values(
                label=f"filler {seed}-{i}", notes="", created_by="test", created_at=utcnow())
                .returning(blacklist_identities.c.id)).scalar_one()
            v = cohort[rng.integers(len(cohort))].astype("<f4")
            st = engine.backend.cohort_stats(v)
            conn.execute(insert(blacklist_samples).values(
                identity_id=iid, backend_id=engine.backend_id, dim=engine.dim, vector=v.tobytes(),
                stats_mean=st[0], stats_std=st[1], net_speech_s=5.0, sha256=f"{seed}-{i}",
                created_by="test", created_at=utcnow()))
        conn.execute(update(blacklist_state).where(blacklist_state.c.id == 1)
                     .values(generation=blacklist_state.c.generation + 1))


@pytest.mark.xfail(strict=True, reason="issue 18 open: at the calibrated thresholds (7.5 at 3 identities) "
                   "enrolled espeak-ng voices score 2.7-4.9; live, fraudsters 2.8-6.0 overlap innocents "
                   "0.1-5.2 (bench/calls/ALARMS.md): a back-end limit, not a calibration one")
def test_tiers_in_identify_status_and_call_event(bl: Blacklist) -> None:
    ids = [_enrol(bl, v, [0, 1]) for v in FRAUD]
    st = bl.status()
    assert st["calibrated"] and st["identities"] == 3 and st["prints"] == 6
    ident, call = st["identify"], st["call"]
    assert ident["review"]["threshold"] < ident["alarm"]["threshold"] < call["alarm"]["threshold"]
    assert st["threshold"] == ident["alarm"]["threshold"]
    assert ident["alarm"]["expected_far"] == pytest.approx(0.01, rel=0.01)
    assert ident["review"]["expected_far"] == pytest.approx(0.05, rel=0.01)
    assert 0 < ident["alarm"]["expected_detection"] <= ident["review"]["expected_detection"] <= 1
    hit = bl.identify(to_wav_bytes(espeak(TEXTS[2] + " " + TEXTS[3], FRAUD[0]), 16000))
    assert hit.net_speech_s >= 6.0
    assert hit.alarm and not hit.review and hit.matches[0].identity_id == ids[0]
    assert hit.matches[0].score >= hit.threshold and hit.matches[0].llr is not None
    assert hit.matches[0].llr > 0 and hit.tiers == ident
    d = hit.to_dict()
    assert d["alarm"] is True and d["review"] is False and d["review_threshold"] < d["threshold"]
    ev = verdict_dict(hit)
    assert ev["alarm"] is True and ev["review"] is False and ev["tiers"]["alarm"]["tier"] == "alarm"
    on_call = bl.identify_voiceprint(bl.engine.voiceprint(espeak(TEXTS[2], FRAUD[0])),
                                     looks_ratio=bl.call_looks_ratio())
    assert on_call.threshold == pytest.approx(call["alarm"]["threshold"], abs=1e-3)
    assert call["review"]["n_effective"] > ident["review"]["n_effective"]
    human = bl.identify_voiceprint(bl.engine.voiceprint(espeak(TEXTS[3] + " " + TEXTS[2], "en-us+f2")))
    assert not human.alarm and human.capped is None
    assert human.review == (human.matches[0].score >= human.review_threshold)


def test_short_speech_is_review_at_most(sqlite_db: Database, engine: VoiceEngine, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Under CALLVET_ALARM_MIN_SPEECH_S of net speech, a probe that reaches the alarm threshold is a
    review (``capped: short_speech``), never an alarm; with enough speech the same voice alarms. Loose
    targets (40 % / 60 % per search) put the thresholds where this one enrolled voice reaches them."""
    monkeypatch.setenv("CALLVET_ALARM_FAR", "0.4")
    monkeypatch.setenv("CALLVET_REVIEW_FAR", "0.6")
    bl = Blacklist(sqlite_db, engine, tmp_path / "short")
    a = _enrol(bl, FRAUD[1], [0, 1])
    probe = espeak(TEXTS[2] + " " + TEXTS[3], FRAUD[1])
    short = bl.identify_voiceprint(engine.voiceprint(_trim(probe, engine, 4.0)))
    full = bl.identify_voiceprint(engine.voiceprint(_trim(probe, engine, 8.0)))
    assert full.matches[0].identity_id == a and full.matches[0].score >= full.threshold
    assert full.alarm and not full.review and full.capped is None
    assert short.matches[0].identity_id == a and short.matches[0].score >= short.threshold
    assert not short.alarm and short.review and short.capped == "short_speech"
    assert short.to_dict()["capped"] == "short_speech" and short.tiers is not None
    assert short.tiers["alarm"]["min_net_speech_s"] == 6.0
    bl.close()


def test_review_is_the_band_between_the_two_thresholds() -> None:
    tiers = {"alarm": {"threshold": 5.0}, "review": {"threshold": 3.0}}
    r = IdentifyResult(4.0, False, 5.0, [Match(1, "a", 4.2, 1.1)], review=True, review_threshold=3.0,
                       tiers=tiers)
    v = verdict_dict(r)
    assert v["review"] and not v["alarm"] and v["matches"][0]["llr"] == 1.1


def test_thresholds_follow_the_blacklist_and_agree_across_replicas(sqlite_db: Database, engine: VoiceEngine,
                                                                   tmp_path: Path) -> None:
    a = Blacklist(sqlite_db, engine, tmp_path / "a")
    b = Blacklist(sqlite_db, engine, tmp_path / "b")
    seen = []
    for n, seed in ((10, 1), (40, 2), (950, 3)):
        _fill(sqlite_db, engine, n, seed)
        sa, sb = a.status(), b.status()
        assert sa["identify"] == sb["identify"] and sa["call"] == sb["call"]
        seen.append(sa["threshold"])
        assert sa["identities"] == sum((10, 40, 950)[: len(seen)])
        assert sa["identify"]["alarm"]["expected_far"] == pytest.approx(0.01, rel=0.01)
    assert seen == sorted(seen) and seen[-1] > seen[0]
    a.close()
    b.close()


def test_far_target_is_configuration(sqlite_db: Database, engine: VoiceEngine, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(sqlite_db, engine, 20, 4)
    loose = Blacklist(sqlite_db, engine, tmp_path / "x").status()["identify"]["alarm"]
    monkeypatch.setenv("CALLVET_ALARM_FAR", "0.001")
    strict = Blacklist(sqlite_db, engine, tmp_path / "y").status()["identify"]["alarm"]
    assert strict["threshold"] > loose["threshold"] and strict["target_far"] == 0.001
    monkeypatch.setenv("CALLVET_ALARM_FAR", "0.2")
    with pytest.raises(Exception, match="CALLVET_REVIEW_FAR"):
        Blacklist(sqlite_db, engine, tmp_path / "z")


def _trim(x: np.ndarray, engine: VoiceEngine, net_s: float) -> np.ndarray:
    speech = engine.analyse(engine.decode(to_wav_bytes(x, 16000))).speech
    return speech[: int(net_s * 16000)]


@pytest.mark.xfail(strict=True, reason="issue 18 open: at the calibrated thresholds (7.5 at 3 identities) "
                   "enrolled espeak-ng voices score 2.7-4.9; live, fraudsters 2.8-6.0 overlap innocents "
                   "0.1-5.2 (bench/calls/ALARMS.md): a back-end limit, not a calibration one")
def test_short_speech_accepted_down_to_the_calibrated_floor_with_less_weight(bl: Blacklist) -> None:
    engine = bl.engine
    assert engine.min_net_speech_s == pytest.approx(1.5) and engine.min_enrol_speech_s == pytest.approx(3.0)
    a = _enrol(bl, FRAUD[0], [0, 1])
    _enrol(bl, FRAUD[1], [0, 1])
    long_probe = espeak(TEXTS[2] + " " + TEXTS[3], FRAUD[0])
    short = bl.identify_voiceprint(engine.voiceprint(_trim(long_probe, engine, 1.6)))
    full = bl.identify_voiceprint(engine.voiceprint(_trim(long_probe, engine, 8.0)))
    assert short.net_speech_s == pytest.approx(1.6, abs=0.01) and short.matches
    assert full.matches[0].identity_id == a and full.alarm
    s_llr = next(m.llr for m in short.matches if m.identity_id == a)
    assert s_llr is not None and full.matches[0].llr is not None and abs(s_llr) < abs(full.matches[0].llr)
    with pytest.raises(AudioError) as too_short:
        engine.voiceprint(_trim(long_probe, engine, 1.468))
    assert too_short.value.code == "too_little_speech"
    assert too_short.value.message.startswith("only 1.46 s of net speech; at least 1.50 s is needed")
    with pytest.raises(AudioError) as enrol_short:
        bl.add_sample(a, to_wav_bytes(_trim(long_probe, engine, 2.5), 16000), "analyst:test")
    assert "at least 3.00 s is needed for an enrolment print" in enrol_short.value.message


def test_decide_alarm_needs_enough_speech_review_is_the_wider_net() -> None:
    from callvet.voice.tiers import decide

    assert decide(9.0, 8.0, 7.0, 5.0, 6.0) == (True, False, None)
    assert decide(9.0, 4.0, 7.0, 5.0, 6.0) == (False, True, "short_speech")
    assert decide(6.0, 8.0, 7.0, 5.0, 6.0) == (False, True, None)
    assert decide(6.0, 2.0, 7.0, 5.0, 6.0) == (False, True, None)
    assert decide(4.0, 8.0, 7.0, 5.0, 6.0) == (False, False, None)
    assert decide(None, 8.0, 7.0, 5.0, 6.0) == (False, False, None)
    # without a calibration there is no review tier: the per-comparison threshold alarms as before
    assert decide(9.0, 2.0, 7.0, None, 0.0) == (True, False, None)


def test_alarm_tier_counts_looks_from_its_own_speech_floor(engine: VoiceEngine,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from callvet.voice.tiers import TierConfig, operating_points

    cal = engine.calibration
    assert cal is not None and cal.tail_long and cal.group_tails_long
    cfg = TierConfig(0.01, 0.05, 6.0)
    call = operating_points(cal, cfg, 40, 80, looks_ratio=40.0, min_net_speech_s=1.5)
    one = operating_points(cal, cfg, 40, 80, min_net_speech_s=1.5)
    assert call["alarm"]["n_effective"] < call["review"]["n_effective"]
    assert one["alarm"]["n_effective"] == pytest.approx(one["review"]["n_effective"])
    assert call["alarm"]["threshold"] > one["alarm"]["threshold"]
    assert call["alarm"]["min_net_speech_s"] == 6.0 and call["review"]["min_net_speech_s"] == 1.5
    # the threshold is the highest any voice family's null needs (minimax over families)
    for tail in cal.group_tails_long.values():
        from callvet.voice.calibration import _p_tail

        assert _p_tail(tail, call["alarm"]["threshold"]) <= cal.p_comparison(call["alarm"]["threshold"],
                                                                              long=True) + 1e-12
    monkeypatch.setenv("CALLVET_ALARM_MIN_SPEECH_S", "-1")
    with pytest.raises(Exception, match="CALLVET_ALARM_MIN_SPEECH_S"):
        TierConfig.from_env()


def test_innocent_callers_stay_below_the_alarm_as_the_list_grows(sqlite_db: Database, engine: VoiceEngine,
                                                                 tmp_path: Path) -> None:
    """Real audio made here: innocent callers (espeak-ng voices on no list, ~8 s each) against lists of
    10, 100 and 1,000 identities. Their best score grows with N (it is a max over N impostors), and the
    threshold grows with it, so none of them alarms at any size."""
    bl = Blacklist(sqlite_db, engine, tmp_path / "grow")
    voices = ["en-us+m5", "en-gb+m7", "en-us+f4", "en-us+klatt4"]
    probes = [engine.voiceprint(engine.analyse(engine.decode(to_wav_bytes(
        espeak(TEXTS[1] + " " + TEXTS[3], v), 16000))).speech) for v in voices]
    best_mean, thresholds = [], []
    for n, seed in ((10, 11), (90, 12), (900, 13)):
        _fill(sqlite_db, engine, n, seed)
        results = [bl.identify_voiceprint(p) for p in probes]
        assert not any(r.alarm for r in results), [(r.matches[0].score, r.threshold) for r in results]
        best_mean.append(float(np.mean([r.matches[0].score for r in results])))
        thresholds.append(results[0].threshold)
    assert best_mean[-1] > best_mean[0] and thresholds[-1] > thresholds[0]
    bl.close()
