"""The engine facade on real synthetic speakers (espeak-ng variants) and a real recording."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from callvet.core.settings import Settings
from callvet.voice.audio import AudioError
from callvet.voice.engine import VoiceEngine, Voiceprint
from speech import asterisk_concat, espeak, phone_channel, to_wav_bytes

TEXTS = [
    "Please confirm the delivery address for your new credit card before Friday.",
    "I would like to know why my instalment loan application is still pending review.",
    "The weather in the mountains was cold and windy for most of the holiday week.",
]


@pytest.fixture(scope="module")
def engine() -> VoiceEngine:
    return VoiceEngine.from_settings(Settings(), backend_dir=False)


def _print(engine: VoiceEngine, x16: np.ndarray, **kw: bool) -> Voiceprint:
    audio = engine.decode(to_wav_bytes(x16, 16000))
    return engine.voiceprint(engine.analyse(audio).speech, **kw)


def test_same_speaker_scores_higher_than_different(engine: VoiceEngine) -> None:
    m3 = [_print(engine, espeak(t, "en-us+m3")) for t in TEXTS]
    f2 = [_print(engine, espeak(t, "en-us+f2")) for t in TEXTS]
    same = [engine.score(m3[0], m3[i]) for i in (1, 2)] + [engine.score(f2[0], f2[i]) for i in (1, 2)]
    diff = [engine.score(a, b) for a in m3 for b in f2]
    assert min(same) > max(diff)
    assert m3[0].vector.shape == (engine.dim,) and abs(float(np.linalg.norm(m3[0].vector)) - 1) < 1e-4


def test_analysis_reports_net_speech_and_pauses(engine: VoiceEngine) -> None:
    x = asterisk_concat(["vm-intro", "vm-goodbye"], gap_s=1.5)
    an = engine.analyse(engine.decode(to_wav_bytes(x, 8000)))
    assert an.duration_s == pytest.approx(len(x) / 8000, abs=0.01)
    assert 0.5 * an.duration_s < an.net_speech_s < an.duration_s
    assert len(an.speech) == pytest.approx(an.net_speech_s * 16000, abs=2)
    assert any(e - s > 1.0 for s, e in an.pauses)
    assert set(an.to_dict()) == {"net_speech_s", "duration_s", "segments", "pauses"}


def test_too_little_speech_is_typed_and_states_minimum(engine: VoiceEngine) -> None:
    short = espeak("Yes.", "en-us+m3")
    with pytest.raises(AudioError) as exc:
        engine.voiceprint(engine.analyse(engine.decode(to_wav_bytes(short, 16000))).speech)
    assert exc.value.code == "too_little_speech"
    assert f"at least {engine.min_net_speech_s:.2f} s" in exc.value.message


def test_accumulator_matches_whole_utterance_print(engine: VoiceEngine) -> None:
    x = np.concatenate([espeak(t, "en-us+m3") for t in TEXTS])
    whole = engine.voiceprint(x)
    acc = engine.accumulator()
    with pytest.raises(AudioError):
        acc.voiceprint()
    for piece in np.array_split(x, 7):
        acc.add(piece)
    assert acc.net_speech_s == pytest.approx(len(x) / 16000)
    assert float(np.dot(acc.voiceprint().vector, whole.vector)) > 0.95


def test_calibrate_without_backend_is_raw_cosine(engine: VoiceEngine) -> None:
    a = _print(engine, espeak(TEXTS[0], "en-us+m3"))
    b = _print(engine, phone_channel(espeak(TEXTS[1], "en-us+m3"), 16000))
    raw = np.array([float(a.vector @ b.vector)])
    assert engine.calibrate(a, raw, np.array([b.stats])) == pytest.approx(raw)
    assert engine.backend_id.endswith(":cosine") and engine.threshold > 0


def test_default_engine_loads_the_committed_backend() -> None:
    import json

    settings = Settings()
    engine = VoiceEngine.from_settings(settings)
    path = settings.models_dir / "backend" / engine.encoder_name / "manifest.json"
    manifest = json.loads(path.read_text())
    assert engine.backend is not None and engine.backend_id == manifest["id"]
    assert engine.threshold == manifest["threshold"] and engine.dim == manifest["dim"]
    enrol = _print(engine, np.concatenate([espeak(t, "en-us+m3") for t in TEXTS[:2]]), enrol=True)
    same = _print(engine, phone_channel(espeak(TEXTS[2], "en-us+m3"), 16000))
    other = _print(engine, phone_channel(espeak(TEXTS[2], "en-us+f2"), 16000))
    assert engine.score(enrol, same) > engine.score(enrol, other)
    assert enrol.stats[1] > 0 and enrol.stats != (0.0, 1.0)


def test_cli_analyse_and_info(tmp_path: Path) -> None:
    import json

    from callvet.cli import app
    from typer.testing import CliRunner

    wav = tmp_path / "call.wav"
    wav.write_bytes(to_wav_bytes(asterisk_concat(["vm-intro", "vm-goodbye"], gap_s=1.0), 8000))
    runner = CliRunner()
    res = runner.invoke(app, ["voiceprint", "analyse", str(wav)])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["net_speech_s"] > 3.0 and report["enough_for_voiceprint"] is True
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    res = runner.invoke(app, ["voiceprint", "analyse", str(bad)])
    assert res.exit_code == 2 and "not_audio" in res.output
    res = runner.invoke(app, ["voiceprint", "info"])
    assert res.exit_code == 0 and json.loads(res.stdout)["backend_id"].startswith("ge2e:")


def test_embedded_speech_and_upload_duration_are_capped(engine: VoiceEngine) -> None:
    x = np.concatenate([espeak(t, "en-us+m3") for t in TEXTS])
    capped = VoiceEngine(engine.encoder, vad=engine.vad, max_speech_s=4.0, max_audio_s=len(x) / 16000 + 1)
    an = capped.analyse(capped.decode(to_wav_bytes(x, 16000)))
    assert an.net_speech_s == pytest.approx(4.0, abs=1e-3) and len(an.speech) == 4 * 16000
    assert engine.analyse(engine.decode(to_wav_bytes(x, 16000))).net_speech_s > 6.0
    short = VoiceEngine(engine.encoder, vad=engine.vad, max_audio_s=2.0)
    with pytest.raises(AudioError) as exc:
        short.decode(to_wav_bytes(x, 16000))
    assert exc.value.code == "too_long"
    assert engine.max_audio_s == Settings().max_audio_s
