"""Server-side ASR: PocketSphinx from the wheel on real (espeak-ng) speech, judged by the questionnaire's
normalisers, not by exact strings."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from callvet.core.errors import InvalidInput
from callvet.questionnaire.normalize import digits_in, numbers_in, yes_no
from callvet.voice.asr import (
    PocketSphinxRecognizer,
    Recognizer,
    normalize_language,
    recognizer_for,
    register_recognizer,
    to_16k,
    unregister_recognizer,
)
from speech import espeak

VOICE = "en-us+f2"


def test_english_resolves_to_pocketsphinx_and_mandarin_to_none() -> None:
    r = recognizer_for("en-US")
    assert isinstance(r, PocketSphinxRecognizer) and isinstance(r, Recognizer)
    assert recognizer_for(None) is r
    assert recognizer_for("zh-CN") is None and recognizer_for("cmn") is None
    assert normalize_language("EN_us") == "en"
    assert "pocketsphinx" in str(r.model_dir()) and (r.model_dir() / "en-us.lm.bin").is_file()


@pytest.mark.parametrize(
    ("text", "hint", "check"),
    [
        ("my income is fifteen thousand", "amount", lambda t: 15000.0 in numbers_in(t, "en")),
        ("twenty five thousand", "amount", lambda t: 25000.0 in numbers_in(t, "en")),
        ("four two seven one", "digits", lambda t: digits_in(t, "en").endswith("4271")),
        ("yes", "yes_no", lambda t: yes_no(t) is True),
        ("no", "yes_no", lambda t: yes_no(t) is False),
        ("I work at a bank", None, lambda t: "bank" in t),
    ],
)
def test_recognises_short_answers_well_enough_for_the_normalisers(text: str, hint: str | None,
                                                                   check: object) -> None:
    r = recognizer_for("en")
    assert r is not None
    out = r.transcribe(espeak(text, VOICE), "en", hint=hint)
    assert out.engine == "asr:pocketsphinx"
    assert callable(check) and check(out.text), f"{text!r} heard as {out.text!r}"


def test_phone_audio_is_upsampled_to_16k_and_capped() -> None:
    """8 kHz call audio reaches the engine at 16 kHz (accuracy on it is measured in docs/asr.md)."""
    x8 = espeak("twenty five thousand", VOICE, sample_rate=8000)
    x16 = to_16k(x8, 8000)
    assert abs(len(x16) - 2 * len(x8)) <= 2
    assert len(to_16k(np.zeros(8000 * 40, np.float32), 8000)) == 16000 * 30


@pytest.mark.parametrize("processes", [0, 1], ids=["in-thread", "child-process"])
def test_one_decoder_per_thread_gives_the_same_answers(processes: int) -> None:
    """In-thread decoders and the child-process pool (the default, off the GIL) agree."""
    r = PocketSphinxRecognizer(processes=processes)
    x = espeak("my income is fifteen thousand", VOICE)
    out: list[str] = []
    threads = [threading.Thread(target=lambda: out.append(r.transcribe(x, "en", hint="amount").text))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    r.close()
    assert len(out) == 3 and len(set(out)) == 1 and 15000.0 in numbers_in(out[0], "en")


def test_bad_input_is_a_typed_error_and_silence_is_empty() -> None:
    r = recognizer_for("en")
    assert r is not None
    with pytest.raises(InvalidInput) as e:
        r.transcribe(np.zeros((2, 100), np.float32), "en")
    assert e.value.code == "bad_audio"
    with pytest.raises(InvalidInput) as e:
        r.transcribe(np.full(1600, np.nan, np.float32), "en")
    assert e.value.code == "bad_audio"
    with pytest.raises(InvalidInput) as e:
        r.transcribe(np.zeros(16000, np.float32), "zh")
    assert e.value.code == "unsupported_language"
    assert r.transcribe(np.zeros(100, np.float32), "en").text == ""


def test_a_plugged_engine_serves_its_language() -> None:
    class Fake:
        engine = "asr:test"
        languages = frozenset({"zh"})

        def transcribe(self, samples16k: np.ndarray, language: str, *, hint: str | None = None) -> object:
            raise AssertionError("not called")

    try:
        register_recognizer(Fake())  # type: ignore[arg-type]
        assert recognizer_for("zh-CN") is not None and recognizer_for("zh-CN").engine == "asr:test"  # type: ignore[union-attr]
    finally:
        unregister_recognizer("zh")
    assert recognizer_for("zh") is None


def test_answer_capture_keeps_each_answer_across_batches_with_its_lead_in() -> None:
    from types import SimpleNamespace

    from callvet.voice.asr import AnswerCapture
    from callvet.voice.call.pipeline import AnswerEnded, AnswerStarted, Ring

    sr = 8000
    signal = np.arange(sr * 4, dtype=np.float32) / (sr * 4)
    proc = SimpleNamespace(ring=Ring(6 * sr), fed=0, offset_s=0.0)
    cap = AnswerCapture(sr)

    def batch(a: int, b: int, outs: list[object]) -> None:
        fed0 = proc.fed
        proc.ring.append(signal[a:b])
        proc.fed = b
        cap.after(proc, signal[a:b], fed0, outs)

    batch(0, sr, [])
    batch(sr, 2 * sr, [AnswerStarted(1, 0.5)])  # start lies in the previous batch: taken from the ring
    batch(2 * sr, 3 * sr, [AnswerEnded(1, 0.5, 2.5, {})])
    got = cap.pop(1)
    assert got is not None and cap.pop(1) is None
    want = to_16k(signal[sr // 2 : int(2.5 * sr)], sr)
    assert len(got) == len(want) and np.allclose(got, want, atol=1e-6)
    batch(3 * sr, 4 * sr, [AnswerStarted(2, 3.1), AnswerEnded(2, 3.1, 3.6, {})])
    two = cap.pop(2)
    assert two is not None and abs(len(two) - 0.5 * 16000) <= 2
