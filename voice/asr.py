"""Server-side speech recognition for answers in a live call, when the robot sends no transcript.

Offline only: the English engine is PocketSphinx, whose US-English acoustic model, dictionary and
language model ship inside the ``pocketsphinx`` wheel (``pocketsphinx/model/en-us``); nothing is
downloaded. Engines are registered per language; :func:`recognizer_for` returns None for a language
with no engine (Mandarin today), and the caller then needs the robot's own transcript.

Plugging an engine (e.g. a Mandarin one)::

    class MyZh:
        engine = "asr:myzh"
        languages = frozenset({"zh"})
        def transcribe(self, samples16k, language, *, hint=None) -> Transcript: ...

    register_recognizer(MyZh())        # every language in .languages now resolves to it

An engine must be callable from several worker threads at once (PocketSphinx keeps one decoder per
thread) and must not fetch models at run time.

Why grammars: the general 20k-word trigram LM mis-hears short answers badly (numbers turn into
"the", "when"); when the question's answer type is known (``hint``: amount, digits, date, yes_no) the
decoder searches a small answer grammar instead, which is how IVR systems recognise such answers.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from callvet.core.errors import InvalidInput, Unavailable
from callvet.voice.childpool import ChildPool

__all__ = [
    "MAX_ANSWER_S",
    "AnswerCapture",
    "PocketSphinxRecognizer",
    "Recognizer",
    "Transcript",
    "asr_grace_s",
    "asr_processes",
    "normalize_language",
    "recognizer_for",
    "register_recognizer",
    "to_16k",
    "unregister_recognizer",
]

#: Longest answer audio handed to a recogniser (older audio of a longer answer is dropped).
MAX_ANSWER_S = 30.0
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Transcript:
    text: str
    confidence: float | None
    engine: str
    seconds: float = 0.0


@runtime_checkable
class Recognizer(Protocol):
    engine: str
    languages: frozenset[str]

    def transcribe(self, samples16k: np.ndarray, language: str, *, hint: str | None = None) -> Transcript:
        """Text of one answer (mono float32 at 16 kHz). ``hint`` is the expected answer type."""
        ...


def normalize_language(language: str | None) -> str:
    """``en-US`` / ``en_us`` / ``EN`` -> ``en``; ``zh-CN``, ``cmn`` -> ``zh``; None -> ``en``."""
    lang = (language or "en").strip().lower().replace("_", "-").split("-")[0]
    return {"cmn": "zh", "eng": "en"}.get(lang, lang)


def asr_grace_s() -> float:
    """How long after an answer ends the server waits for the robot's transcript before recognising
    the answer itself (``CALLVET_ASR_GRACE_MS``, default 300)."""
    from callvet.core.settings import env_value

    return float(env_value("asr_grace_ms")) / 1000.0


def to_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Call audio (8 or 16 kHz) as 16 kHz float32, the last :data:`MAX_ANSWER_S` seconds."""
    from callvet.voice.audio import resample

    x = np.asarray(samples, dtype=np.float32)
    x = x[-int(MAX_ANSWER_S * sample_rate):]
    return resample(x, sample_rate, SAMPLE_RATE)


_ONES = ("zero oh one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen")
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety"
_MONTHS = "january february march april may june july august september october november december"
_GRAMMARS = {
    "number": f"""#JSGF V1.0;
grammar number;
public <answer> = [<lead>] <num>+ [<unit>];
<lead> = my income is | i earn | it is | it's | about | around | the number is | i think | my | it's about;
<num> = {' | '.join((_ONES + ' ' + _TENS).split())} | hundred | thousand | million | and | a | point;
<unit> = a month | a year | per month | yuan | dollars | years;
""",
    "date": f"""#JSGF V1.0;
grammar date;
public <answer> = [<lead>] (<month> | <num>)+;
<lead> = it was | it is | in | on | i was born in | since;
<month> = {' | '.join(_MONTHS.split())};
<num> = {' | '.join((_ONES + ' ' + _TENS).split())} | hundred | thousand | first | second | third | fifth
      | eighth | ninth | twelfth | twentieth | thirtieth;
""",
    "yes_no": """#JSGF V1.0;
grammar yes_no;
public <answer> = yes | yeah | no | correct | that's right | that's correct | not really | yes it is
      | no it isn't | i did | i didn't | of course | nope;
""",
}
_HINT_GRAMMAR = {"amount": "number", "digits": "number", "number": "number", "date": "date",
                 "yes_no": "yes_no"}


class PocketSphinxRecognizer:
    """US-English PocketSphinx with the model from the wheel; one decoder per worker thread."""

    engine = "asr:pocketsphinx"
    languages = frozenset({"en"})

    def __init__(self, model_dir: Path | None = None, *, processes: int | None = None) -> None:
        self._model_dir = model_dir
        self._local = threading.local()
        self._children = ChildPool(asr_processes() if processes is None else processes)

    def close(self) -> None:
        """Stop the decoding children (PocketSphinx holds the GIL while it decodes: the call-server
        benchmark measured a 1.44 s event-loop freeze per 5 s answer in a worker thread, so decoding runs
        in children, :class:`~callvet.voice.childpool.ChildPool`)."""
        self._children.close()

    def model_dir(self) -> Path:
        if self._model_dir is None:
            try:
                import pocketsphinx
            except ImportError as exc:
                raise Unavailable("pocketsphinx is not installed", code="asr_unavailable") from exc
            self._model_dir = Path(pocketsphinx.get_model_path()) / "en-us"
        d = self._model_dir
        if not (d / "en-us").is_dir() or not (d / "en-us.lm.bin").is_file():
            raise Unavailable(f"PocketSphinx US-English model not found in {d}", code="asr_unavailable")
        return d

    def _decoder(self) -> Any:
        dec = getattr(self._local, "decoder", None)
        if dec is None:
            from pocketsphinx import Decoder

            d = self.model_dir()
            try:
                dec = Decoder(hmm=str(d / "en-us"), lm=str(d / "en-us.lm.bin"),
                              dict=str(d / "cmudict-en-us.dict"), samprate=SAMPLE_RATE, loglevel="FATAL")
                for name, jsgf in _GRAMMARS.items():
                    dec.add_jsgf_string(name, jsgf)
            except RuntimeError as exc:
                raise Unavailable(f"PocketSphinx could not load its model: {exc}",
                                  code="asr_unavailable") from exc
            self._local.decoder = dec
        return dec

    def transcribe(self, samples16k: np.ndarray, language: str, *, hint: str | None = None) -> Transcript:
        if normalize_language(language) not in self.languages:
            raise InvalidInput(f"PocketSphinx recognises English only, not {language!r}",
                               code="unsupported_language")
        x = np.asarray(samples16k)
        if x.ndim != 1 or x.dtype.kind != "f":
            raise InvalidInput("speech must be mono float samples at 16 kHz", code="bad_audio")
        if not np.isfinite(x).all():
            raise InvalidInput("speech contains NaN or infinite samples", code="bad_audio")
        x = x[-int(MAX_ANSWER_S * SAMPLE_RATE):]
        t0 = time.perf_counter()
        if x.size < SAMPLE_RATE // 10:
            return Transcript("", None, self.engine, 0.0)
        pcm = (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        search = _HINT_GRAMMAR.get(hint or "", "_default")
        if self._children.processes > 0:
            job = self._children.executor().submit(_decode_in_child, str(self.model_dir()), pcm, search)
            text, conf = job.result()
        else:
            text, conf = _decode(self._decoder(), pcm, search)
        return Transcript(text, conf, self.engine, time.perf_counter() - t0)


def _decode(dec: Any, pcm: bytes, search: str) -> tuple[str, float | None]:
    dec.activate_search(search)
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    hyp = dec.hyp()
    text = hyp.hypstr.strip() if hyp is not None else ""
    return text, (float(hyp.prob) if hyp is not None and text else None)


_child: dict[str, PocketSphinxRecognizer] = {}


def _decode_in_child(model_dir: str, pcm: bytes, search: str) -> tuple[str, float | None]:
    rec = _child.get(model_dir)
    if rec is None:
        rec = _child[model_dir] = PocketSphinxRecognizer(Path(model_dir), processes=0)
    return _decode(rec._decoder(), pcm, search)


def asr_processes() -> int:
    """Child processes that decode (``CALLVET_ASR_PROCESSES``, default 1; 0 decodes in the calling thread)."""
    from callvet.core.settings import env_value

    return int(env_value("asr_processes"))


class AnswerCapture:
    """Each answer's audio while a call's processor finds answers, for the recogniser.

    :meth:`after` runs in the worker right after the processor's job on ``chunk`` (the call's audio from
    sample ``fed0``): it keeps the samples between each answer's start and end (at most
    :data:`MAX_ANSWER_S`, the newest), taking the lead-in from before ``chunk`` from the processor's
    ring. Only the answer in progress is held; a finished answer waits, at 16 kHz, for :meth:`pop`.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sr = sample_rate
        self.max_n = int(MAX_ANSWER_S * sample_rate)
        self._from: int | None = None
        self._parts: list[np.ndarray] = []
        self._n = 0
        self._done: dict[int, np.ndarray] = {}

    def after(self, processor: Any, chunk: np.ndarray, fed0: int, outs: list[Any]) -> None:
        def idx(t: float) -> int:
            return min(max(0, round((t - processor.offset_s) * self.sr)), processor.fed)

        for out in outs:
            kind = type(out).__name__
            if kind == "AnswerStarted":
                self._from, self._parts, self._n = idx(out.t_s), [], 0
            elif kind == "AnswerEnded" and self._from is not None:
                self._take(processor, chunk, fed0, idx(out.end_s))
                x = np.concatenate(self._parts) if self._parts else np.zeros(0, np.float32)
                self._done[out.index] = to_16k(x, self.sr)
                while len(self._done) > 4:
                    self._done.pop(next(iter(self._done)))
                self._from, self._parts, self._n = None, [], 0
        if self._from is not None:
            self._take(processor, chunk, fed0, processor.fed)

    def _take(self, processor: Any, chunk: np.ndarray, fed0: int, b: int) -> None:
        a = self._from
        assert a is not None
        new: list[np.ndarray] = []
        if a < fed0:
            new.append(processor.ring.slice(a, min(b, fed0)))
        lo, hi = max(a, fed0) - fed0, b - fed0
        if hi > lo:
            new.append(np.asarray(chunk[lo:hi], dtype=np.float32))
        self._parts.extend(new)
        self._n += sum(len(p) for p in new)
        self._from = max(a, b)
        while self._n > self.max_n and len(self._parts) > 1:
            self._n -= len(self._parts.pop(0))

    def pop(self, index: int) -> np.ndarray | None:
        return self._done.pop(index, None)


_lock = threading.Lock()
_registry: dict[str, Recognizer] = {}


def register_recognizer(recognizer: Recognizer) -> None:
    """Serve every language in ``recognizer.languages`` with it (replacing an earlier engine)."""
    with _lock:
        for lang in recognizer.languages:
            _registry[normalize_language(lang)] = recognizer


def unregister_recognizer(language: str) -> None:
    with _lock:
        _registry.pop(normalize_language(language), None)


def recognizer_for(language: str | None) -> Recognizer | None:
    """The engine for ``language`` (None means English), or None: the robot's transcript is needed."""
    with _lock:
        return _registry.get(normalize_language(language))


register_recognizer(PocketSphinxRecognizer())
