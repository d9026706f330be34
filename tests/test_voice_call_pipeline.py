"""The per-call pipeline on the real VAD, engine and blacklist (no server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from callvet.core.db import Database
from callvet.core.settings import Settings
from callvet.voice.call.frames import VoiceCheckpoint
from callvet.voice.call.pipeline import (
    AnswerEnded,
    AnswerStarted,
    CallConfig,
    CallProcessor,
    Ring,
    VerdictReady,
)
from callvet.voice.call.scoring import VoiceScoring
from callvet.voice.vad import VadStream
from speech import espeak, to_wav_bytes

ENROL = ("My account was opened at the branch on the high street. I usually pay my bills on the first of "
         "every month and I travel a lot for work.")
PROBE = "I bought the card last spring and I use it for groceries and fuel every week."
ANSWERS = [
    PROBE,
    "My employer is a logistics company, I have worked there for about six years now.",
    "The loan is for a new kitchen, and I can pay around four hundred a month.",
    "Yes, I live at the same address with my wife and our two children.",
]


def test_ring_keeps_the_last_samples_by_absolute_index() -> None:
    r = Ring(10)
    r.append(np.arange(7, dtype=np.float32))
    r.append(np.arange(7, 12, dtype=np.float32))
    assert (r.start, r.end) == (2, 12)
    assert r.slice(0, 12).tolist() == list(range(2, 12))
    assert r.slice(5, 9).tolist() == [5, 6, 7, 8]
    r.append(np.arange(100, 125, dtype=np.float32))
    assert r.slice(0, 10**6).tolist() == list(range(115, 125)) and r.end == 37
    assert r.slice(40, 50).size == 0


@pytest.fixture(scope="module")
def scoring(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from callvet.voice.blacklist import Blacklist
    from callvet.voice.engine import VoiceEngine

    d: Path = tmp_path_factory.mktemp("pipe")
    db = Database(f"sqlite:///{d / 'c.db'}")
    db.create_schema()
    engine = VoiceEngine.from_settings(Settings(data_dir=d, database_url=db.url))
    bl = Blacklist(db, engine, d / "faiss")
    ident = bl.create_identity("m3", "", "test")
    bl.add_sample(ident["id"], to_wav_bytes(espeak(ENROL, "en-us+m3"), 16000), "test")
    yield VoiceScoring(engine, bl)
    bl.close()
    db.dispose()


def _run(scoring: VoiceScoring, x: np.ndarray, batch: int) -> tuple[CallProcessor, list[Any]]:
    p = CallProcessor(8000, VadStream(sample_rate=8000), scoring.watch(), CallConfig())
    outs: list[Any] = []
    for i in range(0, len(x), batch):
        outs += p.process(x[i : i + batch])
    return p, outs + p.finish()


def _call(voice: str) -> np.ndarray:
    z = np.zeros(4000, np.float32)
    return np.concatenate([z, espeak(PROBE, voice, sample_rate=8000), z, z])


def test_verdict_comes_at_min_speech_whatever_the_batching(scoring: VoiceScoring) -> None:
    x = _call("en-us+m3")
    results = {}
    for batch in (160, 480, 16000):
        p, outs = _run(scoring, x, batch)
        verdicts = [o for o in outs if isinstance(o, VerdictReady)]
        assert verdicts and verdicts[-1].verdict["alarm"] is True
        assert [type(o) for o in outs if not isinstance(o, VerdictReady | VoiceCheckpoint)] == [
            AnswerStarted, AnswerEnded]
        assert any(isinstance(o, VoiceCheckpoint) for o in outs)  # issue 17: resumable state
        results[batch] = verdicts[0].verdict["net_speech_s"]
        assert p.watch is not None and p.watch.net_speech_s > 4.0
    # within one 0.5 s scoring chunk of the engine's minimum, however the audio was batched
    m = scoring.min_net_speech_s
    assert all(m <= v < m + 0.55 for v in results.values()), results


def test_other_voice_and_too_little_speech(scoring: VoiceScoring) -> None:
    _, outs = _run(scoring, _call("en-us+f2"), 480)
    verdicts = [o.verdict for o in outs if isinstance(o, VerdictReady)]
    assert verdicts and not any(v["alarm"] for v in verdicts)
    z = np.zeros(8000, np.float32)
    _, outs = _run(scoring, np.concatenate([z, espeak("yes, that is right", sample_rate=8000), z]), 160)
    assert not [o for o in outs if isinstance(o, VerdictReady)]
    (end,) = [o for o in outs if isinstance(o, AnswerEnded)]
    assert end.prosody["syllables"] >= 2 and end.end_s - end.start_s > 0.5


def test_hang_up_mid_answer_and_shedding_close_the_answer(scoring: VoiceScoring) -> None:
    x = _call("en-us+m3")[: 8000 * 3]
    p = CallProcessor(8000, VadStream(sample_rate=8000), scoring.watch(), CallConfig())
    outs = p.process(x[:16000])
    assert [type(o) for o in outs] == [AnswerStarted]
    outs = p.process(x[16000:], shed_s=1.0)
    assert isinstance(outs[0], AnswerEnded) and outs[0].end_s == pytest.approx(2.0)
    outs = p.finish()
    ends = [o for o in outs if isinstance(o, AnswerEnded)]
    assert all(e.start_s >= 3.0 for e in ends)


def test_confirmed_verdict_embeds_on_a_longer_stride_and_still_sees_a_change(scoring: VoiceScoring) -> None:
    """Another voice answers first (verdict at 3 s, confirmed at 6 s), then the enrolled voice takes
    over: with the stable stride a third of the speech is not embedded, yet the alarm comes at the same
    call time as with every second embedded."""
    z = np.zeros(4000, np.float32)
    other = [espeak(t, "en-us+f2", sample_rate=8000) for t in ANSWERS[:2]]
    fraud = [espeak(t, "en-us+m3", sample_rate=8000) for t in ANSWERS]
    x = np.concatenate([z, other[0], z, z, other[1], z, z, *[np.concatenate([f, z, z]) for f in fraud]])
    runs = {}
    for stable in (0.0, 6.0):
        cfg = CallConfig(stable_rescore_s=stable)
        p = CallProcessor(8000, VadStream(sample_rate=8000), scoring.watch(), cfg)
        outs: list[Any] = []
        for i in range(0, len(x), 480):
            outs += p.process(x[i : i + 480])
        outs += p.finish()
        runs[stable] = (p, [o for o in outs if isinstance(o, VerdictReady)])
    (full, v_full), (strided, v_strided) = runs[0.0], runs[6.0]
    assert [v.verdict["alarm"] for v in v_full] == [v.verdict["alarm"] for v in v_strided] == [False, True]
    assert v_strided[0].verdict == v_full[0].verdict and 3.0 <= v_strided[0].verdict["net_speech_s"] < 3.55
    assert v_strided[1].audio_t_s == pytest.approx(v_full[1].audio_t_s, abs=0.6)
    assert full.skipped_s == 0 and strided.skipped_s > 5.0
    assert strided.net_speech_s == pytest.approx(full.net_speech_s, abs=0.01) and full.net_speech_s > 25
    assert strided.watch is not None and strided.watch.net_speech_s < full.net_speech_s - 5.0
