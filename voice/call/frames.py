"""Frames: every event of a call, in both directions, as one typed dataclass each.

A call is a pipeline of processors (:mod:`callvet.voice.call.processors`) and frames are what flows
through it. *Inbound* frames are what a wire protocol's serializer turns a robot's message into
(:class:`StartFrame`, :class:`AudioFrame`, :class:`MarkFrame`, :class:`DtmfFrame`, :class:`StopFrame`,
:class:`ClientEventFrame`, then :class:`QuestionAsked` / :class:`Transcript` once understood).
*Analysis* frames come out of the worker-pool stage (VAD, prosody, voiceprint): :class:`AnswerStarted`,
:class:`AnswerEnded`, :class:`VerdictReady`, :class:`ScoringFailed`. *Outbound* frames are the events the
robot gets (:class:`CallStarted`, :class:`LagFrame`, :class:`ErrorFrame`, :class:`MarkEcho`,
:class:`ObserverEvent`, :class:`ServerTranscript`, plus the answer and verdict frames themselves); each
protocol's serializer owns their JSON (``Serializer.encode``). The pipeline never sees JSON, base64 or
byte order, so adding a protocol means adding a serializer and nothing else.

An answer has one shape: :class:`AnswerStarted` / :class:`AnswerEnded` leave the analysis stage with
the timing and prosody only, the answer-context processor fills in ``delay_s``, ``question_id`` and the
transcripts (``dataclasses.replace``), and observers, the call record and the robot all get that same
object (``AnswerStart``/``AnswerEnd`` in :mod:`callvet.voice.call.observer` are these classes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from callvet.voice.g711 import mulaw_decode

__all__ = [
    "BYTES_PER_SAMPLE",
    "AnswerEnded",
    "AnswerStarted",
    "AudioFrame",
    "CallEnded",
    "CallStarted",
    "ClientEventFrame",
    "DtmfFrame",
    "DtmfRecord",
    "ErrorFrame",
    "Frame",
    "InboundFrame",
    "LagFrame",
    "MarkEcho",
    "MarkFrame",
    "ObserverEvent",
    "OutboundFrame",
    "Output",
    "QuestionAsked",
    "QuestionRecord",
    "ScoringFailed",
    "ServerTranscript",
    "StartFrame",
    "StopFrame",
    "Transcript",
    "VerdictReady",
    "VoiceCheckpoint",
    "decode_payload",
]


@dataclass(frozen=True)
class StartFrame:
    """The stream's metadata: who is calling about which application, and the audio format."""

    protocol: str
    stream_id: str
    call_sid: str
    sample_rate: int
    encoding: str
    tracks: tuple[str, ...] = ("inbound",)
    params: dict[str, Any] = field(default_factory=dict)
    #: The one-time stream token of a claimed case call (customParameters ``stream_token``): a credential,
    #: so it is kept out of ``params`` (which the call record stores) and out of the repr.
    stream_token: str | None = field(default=None, repr=False)

    @property
    def application_id(self) -> str | None:
        v = self.params.get("application_id") or self.params.get("applicationId")
        return str(v)[:100] if v else None

    @property
    def language(self) -> str | None:
        v = self.params.get("language")
        return str(v)[:32] if v else None


@dataclass(frozen=True)
class AudioFrame:
    """Audio still in its wire encoding (``mulaw`` bytes or ``pcm16`` little-endian bytes).

    Decoding to float is left to the worker pool: numpy on the event loop thread would hand the GIL to
    busy workers on every frame, and the loop of a busy server would then wait on them.
    ``seq`` is the protocol's chunk number (0 when it has none); ``filled`` marks silence standing in
    for a lost frame.
    """

    data: bytes
    encoding: str
    sample_rate: int
    seq: int = 0
    filled: bool = False

    @property
    def n_samples(self) -> int:
        return len(self.data) if self.encoding == "mulaw" else len(self.data) // 2

    @property
    def samples(self) -> np.ndarray:
        return decode_payload(self.data, self.encoding)


SILENCE_BYTE = {"mulaw": b"\xff", "pcm16": b"\x00"}
BYTES_PER_SAMPLE = {"mulaw": 1, "pcm16": 2}


def decode_payload(data: bytes, encoding: str) -> np.ndarray:
    """Wire bytes -> float32 samples in [-1, 1] (mu-law through :mod:`callvet.voice.g711`)."""
    if encoding == "mulaw":
        return mulaw_decode(data)
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


@dataclass(frozen=True)
class MarkFrame:
    name: str


@dataclass(frozen=True)
class DtmfFrame:
    digit: str


@dataclass(frozen=True)
class StopFrame:
    reason: str = "stop"


@dataclass(frozen=True)
class ClientEventFrame:
    """A callvet extension sent by the robot (``callvet.question``, ``callvet.transcript``)."""

    name: str
    data: dict[str, Any]


InboundFrame = StartFrame | AudioFrame | MarkFrame | DtmfFrame | StopFrame | ClientEventFrame
#: What a serializer yields for one socket message (kept under its old name).
Frame = InboundFrame


@dataclass(frozen=True)
class QuestionAsked:
    """The robot finished playing a question at call audio time ``ended_at_s``."""

    question_id: str
    text: str
    ended_at_s: float
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Transcript:
    """A recognised utterance: the robot's ASR (``callvet.transcript`` in) or the server's."""

    text: str
    final: bool
    question_id: str | None
    data: dict[str, Any] = field(default_factory=dict)


# -- analysis frames (out of the worker-pool stage) and the answer's one shape ------------------------
@dataclass(frozen=True)
class AnswerStarted:
    """Speech began at call audio time ``t_s``; ``delay_s`` is measured from the end of the question
    (when the robot reported one after the previous answer) or else from the previous speech end."""

    index: int
    t_s: float
    delay_s: float | None = None
    question_id: str | None = None


@dataclass(frozen=True)
class AnswerEnded:
    """Speech ended (silence for the configured time); ``prosody`` is
    :meth:`callvet.voice.call.prosody.ProsodyFeatures.to_dict` (plus ``delay_s`` once in context)."""

    index: int
    start_s: float
    end_s: float
    prosody: dict[str, Any]
    delay_s: float | None = None
    question_id: str | None = None
    transcripts: tuple[str, ...] = ()
    #: The answer's speech at 16 kHz (at most 30 s) when the server recognises speech itself, else None.
    audio16k: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
            "delay_s": None if self.delay_s is None else round(self.delay_s, 3),
            "question_id": self.question_id, "prosody": self.prosody, "transcripts": list(self.transcripts),
        }


@dataclass(frozen=True)
class VerdictReady:
    """A verdict that differs from the previous one; ``audio_t_s`` is the call audio time of the last
    speech sample it used (the latency of the event is measured from there)."""

    verdict: dict[str, Any]
    audio_t_s: float


@dataclass(frozen=True)
class ScoringFailed:
    code: str
    message: str


@dataclass(frozen=True)
class VoiceCheckpoint:
    """The analysis stage's resumable state (issue 17): written to the call record so that another
    replica can continue the call (voiceprint accumulator sums, counters, last verdict; never audio)."""

    state: dict[str, Any]


Output = AnswerStarted | AnswerEnded | VerdictReady | ScoringFailed | VoiceCheckpoint


# -- outbound frames (to the robot; ``record`` says whether the call's timeline gets it too) ----------
@dataclass(frozen=True)
class CallStarted:
    call_id: str
    min_net_speech_s: float | None
    sample_rate: int
    asr: str | None
    #: Issue 17, a resumed call: ``epoch``, ``audio_t_s`` (the call audio time this stream's first
    #: sample continues from) and ``net_speech_s`` carried over.
    resumed: dict[str, Any] | None = None


@dataclass(frozen=True)
class LagFrame:
    """The call fell behind real time and waiting audio was shed."""

    lag_s: float
    shed_s: float
    max_lag_s: float
    t_s: float


@dataclass(frozen=True)
class ErrorFrame:
    code: str
    message: str
    close_code: int | None = None
    record: bool = True
    t_s: float = 0.0

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.close_code is not None:
            out["close_code"] = self.close_code
        return out


@dataclass(frozen=True)
class MarkEcho:
    """A robot's mark, echoed once all audio sent before it has been processed."""

    name: str


@dataclass(frozen=True)
class ObserverEvent:
    """A ``callvet.*`` event an observer returned from a hook."""

    observer: str
    event: dict[str, Any]
    t_s: float


@dataclass(frozen=True)
class ServerTranscript:
    """The server's own recognition of an answer the robot sent no transcript for."""

    transcript: Transcript
    index: int
    t_s: float


@dataclass(frozen=True)
class DtmfRecord:
    """A key the caller pressed, at call audio time ``t_s`` (timeline only)."""

    digit: str
    t_s: float


@dataclass(frozen=True)
class QuestionRecord:
    """A question the robot reported, at call audio time ``t_s`` (timeline only)."""

    question: QuestionAsked
    t_s: float


@dataclass(frozen=True)
class CallEnded:
    """The call is over (``reason``): observers' ``on_stop``; the last frame through the pipeline."""

    reason: str


OutboundFrame = (CallStarted | VerdictReady | AnswerStarted | AnswerEnded | LagFrame | ErrorFrame | MarkEcho
                 | ObserverEvent | ServerTranscript)
