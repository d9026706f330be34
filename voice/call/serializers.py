"""Wire protocols: Twilio Media Streams and FreeSWITCH mod_audio_fork, frames in and out.

The serializer is the first and the last processor of a call's pipeline: ``text``/``binary`` turn a
socket message into inbound frames, ``encode`` turns an outbound frame into the message the protocol
sends (the ``callvet.*`` events are common to both; Twilio adds its ``mark`` echo). Nothing else in the
call server builds JSON for the robot.

A serializer is a per-call object: it owns the protocol's state (has ``start`` arrived, the jitter
buffer) and raises :class:`ProtocolError` for bad input. The error's ``close_code`` says whether the
stream can go on (``None``: drop this message and continue) or must be closed, and with which WebSocket
code (1003 unsupported data, 1007 invalid payload, 1008 policy, 1009 too big).
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
from typing import Any

import numpy as np
from callvet.core.errors import InvalidInput
from callvet.voice.call.frames import (
    AnswerEnded,
    AnswerStarted,
    AudioFrame,
    CallStarted,
    ClientEventFrame,
    DtmfFrame,
    ErrorFrame,
    Frame,
    LagFrame,
    MarkEcho,
    MarkFrame,
    ObserverEvent,
    ServerTranscript,
    StartFrame,
    StopFrame,
    VerdictReady,
)
from callvet.voice.g711 import mulaw_decode

__all__ = [
    "CLIENT_EVENTS",
    "ForkSerializer",
    "JitterBuffer",
    "ProtocolError",
    "Serializer",
    "TwilioSerializer",
    "callvet_event",
    "mulaw_to_float",
    "serializer_for",
]

CLOSE_UNSUPPORTED = 1003
CLOSE_INVALID = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009

CLIENT_EVENTS = frozenset({"callvet.question", "callvet.transcript"})

#: Parameters that carry a key (a robot may authenticate in ``customParameters``); never kept.
_SECRET_PARAMS = frozenset({"token", "stream_token", "api_key", "key", "authorization"})


def _stream_token(params: dict[str, Any]) -> str | None:
    v = params.get("stream_token")
    return str(v)[:200] if isinstance(v, str) and v else None


class ProtocolError(InvalidInput):
    """Bad input on the wire; ``close_code`` is None when only this message is dropped."""

    code = "protocol_error"

    def __init__(self, message: str, *, code: str, close_code: int | None = None) -> None:
        super().__init__(message, code=code)
        self.close_code = close_code


def mulaw_to_float(data: bytes) -> np.ndarray:
    """G.711 mu-law bytes to float32 (:func:`callvet.voice.g711.mulaw_decode`)."""
    return mulaw_decode(data)


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def callvet_event(frame: Any) -> dict[str, Any] | None:
    """The ``callvet.*`` JSON of an outbound frame, the same on every protocol (None: not sent)."""
    if isinstance(frame, VerdictReady):
        return {"event": "callvet.voiceprint", **frame.verdict, "audio_t_s": round(frame.audio_t_s, 3)}
    if isinstance(frame, AnswerStarted):
        return {"event": "callvet.answer_start", "index": frame.index, "t_s": round(frame.t_s, 3),
                "delay_s": _round(frame.delay_s), "question_id": frame.question_id}
    if isinstance(frame, AnswerEnded):
        return {"event": "callvet.answer_end", **frame.to_dict()}
    if isinstance(frame, ErrorFrame):
        return {"event": "callvet.error", **frame.data()}
    if isinstance(frame, ObserverEvent):
        return frame.event
    if isinstance(frame, LagFrame):
        return {"event": "callvet.lag", "lag_s": frame.lag_s, "shed_s": frame.shed_s,
                "max_lag_s": frame.max_lag_s}
    if isinstance(frame, ServerTranscript):
        t = frame.transcript
        return {"event": "callvet.transcript", "text": t.text, "final": t.final, "question_id": t.question_id,
                **t.data}
    if isinstance(frame, CallStarted):
        out = {"event": "callvet.started", "call_id": frame.call_id,
               "min_net_speech_s": frame.min_net_speech_s, "sample_rate": frame.sample_rate,
               "asr": frame.asr}
        if frame.resumed is not None:
            out["resumed"] = frame.resumed
        return out
    return None


def _json(text: str) -> dict[str, Any]:
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("message is not valid JSON", code="bad_json") from None
    if not isinstance(msg, dict):
        raise ProtocolError("message must be a JSON object", code="bad_json")
    return msg


def _client_event(name: str, msg: dict[str, Any]) -> ClientEventFrame:
    data = {k: v for k, v in msg.items() if k != "event"}
    return ClientEventFrame(name=name, data=data)


class JitterBuffer:
    """Reorders numbered frames within a bounded window.

    Frames are released in sequence order. A gap is waited for until ``depth`` later frames are held;
    then the missing frames are given up and replaced by silence of the same length (so audio time stays
    true). Late or duplicate frames are dropped and counted. Memory never exceeds ``depth`` frames.
    A number more than ``max_jump`` frames ahead (default 1500: 30 s of 20 ms frames, longer than any
    network gap a call survives) is a protocol error and the frame is dropped, so one absurd ``chunk``
    cannot record a billion lost frames or move the stream's clock.
    """

    def __init__(self, depth: int = 8, *, max_gap: int = 50, max_jump: int = 1500,
                 silence: bytes = b"\xff") -> None:
        self.depth = depth
        self.max_jump = max_jump
        self.silence = silence
        self.max_gap = max_gap
        self.next_seq: int | None = None
        self._heap: list[tuple[int, int, bytes]] = []
        self._seen: set[int] = set()
        self._n = 0
        self.late = 0
        self.duplicates = 0
        self.lost = 0
        self.reordered = 0

    def push(self, seq: int, payload: bytes) -> list[tuple[int, bytes, bool]]:
        if not 0 <= seq < 1 << 32:
            raise ProtocolError(f"media chunk {seq} is outside 0..2^32-1", code="bad_chunk")
        if self.next_seq is None:
            self.next_seq = seq
        if seq - self.next_seq > self.max_jump:
            raise ProtocolError(
                f"media chunk {seq} jumps {seq - self.next_seq} frames ahead of {self.next_seq} "
                f"(limit {self.max_jump}); frame dropped", code="bad_chunk")
        if seq == self.next_seq and not self._heap:  # in order, nothing held: the common case
            self.next_seq = seq + 1
            return [(seq, payload, False)]
        if seq < self.next_seq:
            self.late += 1
            return []
        if seq in self._seen:
            self.duplicates += 1
            return []
        if seq != self.next_seq:
            self.reordered += 1
        self._seen.add(seq)
        self._n += 1
        heapq.heappush(self._heap, (seq, self._n, payload))
        return self._release(force=len(self._heap) > self.depth)

    def flush(self) -> list[tuple[int, bytes, bool]]:
        out: list[tuple[int, bytes, bool]] = []
        while self._heap:
            out += self._release(force=True)
        return out

    def _release(self, *, force: bool) -> list[tuple[int, bytes, bool]]:
        out: list[tuple[int, bytes, bool]] = []
        assert self.next_seq is not None
        while self._heap:
            seq, _, payload = self._heap[0]
            if seq != self.next_seq:
                if not force:
                    break
                gap = seq - self.next_seq
                self.lost += gap
                fill = min(gap, self.max_gap)
                for i in range(fill):
                    out.append((self.next_seq + i, self.silence * len(payload), True))
                self.next_seq = seq
            heapq.heappop(self._heap)
            self._seen.discard(seq)
            out.append((seq, payload, False))
            self.next_seq = seq + 1
            force = len(self._heap) > self.depth
        return out


class Serializer:
    """Per-call protocol state. ``text``/``binary`` return the frames a message yields, in order."""

    protocol = "base"

    def __init__(self, *, max_frame_s: float = 1.0) -> None:
        self.max_frame_s = max_frame_s
        self.start: StartFrame | None = None

    def text(self, text: str) -> list[Frame]:
        raise NotImplementedError

    def binary(self, data: bytes) -> list[Frame]:
        raise NotImplementedError

    def finish(self) -> list[Frame]:
        """Frames still held (e.g. in a jitter buffer) when the stream ends."""
        return []

    def outbound_mark(self, name: str) -> str | None:
        """The text frame that echoes a mark back to the client, when the protocol has marks."""
        return None

    def encode(self, frame: Any) -> str | None:
        """The text message an outbound frame becomes on this protocol (None: nothing is sent)."""
        if isinstance(frame, MarkEcho):
            return self.outbound_mark(frame.name)
        event = callvet_event(frame)
        return None if event is None else json.dumps(event)


class TwilioSerializer(Serializer):
    """Twilio Media Streams: JSON text frames ``connected``, ``start``, ``media``, ``mark``, ``dtmf``,
    ``stop``; audio is base64 mu-law at 8 kHz, numbered by ``chunk`` (reordered in a jitter buffer)."""

    protocol = "twilio"

    def __init__(self, *, max_frame_s: float = 1.0, jitter_depth: int = 8) -> None:
        super().__init__(max_frame_s=max_frame_s)
        self.jitter = JitterBuffer(jitter_depth)
        self.stream_sid = ""
        self.outbound_frames = 0

    def binary(self, data: bytes) -> list[Frame]:
        raise ProtocolError(
            "Twilio Media Streams sends JSON text frames only", code="unsupported_data",
            close_code=CLOSE_UNSUPPORTED,
        )

    def text(self, text: str) -> list[Frame]:
        msg = _json(text)
        event = msg.get("event")
        if event == "media":
            return self._media(msg)
        if event == "connected":
            return []
        if event == "start":
            return [self._start(msg)]
        if event == "mark":
            name = (msg.get("mark") or {}).get("name") if isinstance(msg.get("mark"), dict) else None
            if not isinstance(name, str) or not name:
                raise ProtocolError("mark event without mark.name", code="bad_mark")
            return [MarkFrame(name=name[:200])]
        if event == "dtmf":
            dtmf = msg.get("dtmf") if isinstance(msg.get("dtmf"), dict) else {}
            digit = str(dtmf.get("digit", ""))[:4]
            if not digit:
                raise ProtocolError("dtmf event without dtmf.digit", code="bad_dtmf")
            return [DtmfFrame(digit=digit)]
        if event == "stop":
            return [*self._drain(), StopFrame("stop")]
        if isinstance(event, str) and event in CLIENT_EVENTS:
            return [_client_event(event, msg)]
        raise ProtocolError(f"unknown event {str(event)[:50]!r}", code="unknown_event")

    def finish(self) -> list[Frame]:
        return self._drain()

    def outbound_mark(self, name: str) -> str | None:
        return json.dumps({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    def _start(self, msg: dict[str, Any]) -> StartFrame:
        if self.start is not None:
            raise ProtocolError("second start event on one stream", code="duplicate_start",
                                close_code=CLOSE_POLICY)
        start = msg.get("start")
        if not isinstance(start, dict):
            raise ProtocolError("start event without a start object", code="bad_start",
                                close_code=CLOSE_INVALID)
        fmt = start.get("mediaFormat") or {}
        if not isinstance(fmt, dict):
            raise ProtocolError("mediaFormat must be an object", code="bad_start", close_code=CLOSE_INVALID)
        encoding = fmt.get("encoding", "audio/x-mulaw")
        rate = fmt.get("sampleRate", 8000)
        channels = fmt.get("channels", 1)
        if encoding != "audio/x-mulaw" or rate != 8000 or channels != 1:
            raise ProtocolError(
                f"unsupported media format {encoding!r} at {rate} Hz x {channels}; Twilio Media Streams "
                "carries audio/x-mulaw, 8000 Hz, mono", code="unsupported_format",
                close_code=CLOSE_UNSUPPORTED,
            )
        params = start.get("customParameters") or {}
        if not isinstance(params, dict):
            params = {}
        tracks = start.get("tracks") or ["inbound"]
        self.stream_sid = str(start.get("streamSid") or msg.get("streamSid") or "")[:100]
        self.start = StartFrame(
            protocol=self.protocol, stream_id=self.stream_sid, call_sid=str(start.get("callSid") or "")[:100],
            sample_rate=8000, encoding="mulaw",
            tracks=tuple(str(t)[:20] for t in tracks if isinstance(t, str)) or ("inbound",),
            params={str(k)[:64]: str(v)[:200] for k, v in list(params.items())[:32]
                    if str(k).lower() not in _SECRET_PARAMS},
            stream_token=_stream_token(params),
        )
        return self.start

    def _media(self, msg: dict[str, Any]) -> list[Frame]:
        if self.start is None:
            raise ProtocolError("media before start", code="media_before_start")
        media = msg.get("media")
        if not isinstance(media, dict):
            raise ProtocolError("media event without a media object", code="bad_media")
        track = media.get("track", "inbound")
        if track not in ("inbound", "inbound_track"):
            self.outbound_frames += 1
            return []
        payload = media.get("payload")
        if not isinstance(payload, str):
            raise ProtocolError("media.payload must be a base64 string", code="bad_payload")
        if len(payload) > 4 * 8000 * self.max_frame_s / 3 + 4:
            raise ProtocolError(
                f"media frame longer than {self.max_frame_s:g} s", code="frame_too_large",
                close_code=CLOSE_TOO_BIG,
            )
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("media.payload is not valid base64", code="bad_payload") from None
        if not data:
            return []
        try:
            seq = int(media.get("chunk", msg.get("sequenceNumber")))
        except (TypeError, ValueError):
            try:
                seq = int(media["timestamp"]) // 20
            except (KeyError, TypeError, ValueError):
                raise ProtocolError("media without chunk or timestamp", code="bad_media") from None
        return [AudioFrame(payload, "mulaw", 8000, s, filled) for s, payload, filled in
                self.jitter.push(seq, data)]

    def _drain(self) -> list[Frame]:
        return [AudioFrame(payload, "mulaw", 8000, s, filled) for s, payload, filled in self.jitter.flush()]


class ForkSerializer(Serializer):
    """FreeSWITCH mod_audio_fork: one JSON metadata text frame, then binary 16-bit little-endian PCM at
    8 or 16 kHz (``sampleRate`` in the metadata). Later text frames may carry callvet events or stop."""

    protocol = "fork"

    def text(self, text: str) -> list[Frame]:
        msg = _json(text)
        if self.start is None:
            return [self._start(msg)]
        event = msg.get("event")
        if event == "stop":
            return [StopFrame("stop")]
        if isinstance(event, str) and event in CLIENT_EVENTS:
            return [_client_event(event, msg)]
        raise ProtocolError(f"unknown event {str(event)[:50]!r}", code="unknown_event")

    def binary(self, data: bytes) -> list[Frame]:
        if self.start is None:
            raise ProtocolError("audio before the metadata frame", code="media_before_start")
        rate = self.start.sample_rate
        if len(data) > 2 * rate * self.max_frame_s:
            raise ProtocolError(f"audio frame longer than {self.max_frame_s:g} s", code="frame_too_large",
                                close_code=CLOSE_TOO_BIG)
        if len(data) % 2:
            raise ProtocolError("16-bit PCM frame with an odd byte count", code="bad_payload")
        if not data:
            return []
        return [AudioFrame(bytes(data), "pcm16", rate)]

    def _start(self, msg: dict[str, Any]) -> StartFrame:
        rate = msg.get("sampleRate", msg.get("sample_rate"))
        if rate not in (8000, 16000):
            raise ProtocolError(
                f"sample rate {rate!r} is not supported; mod_audio_fork streams 8000 or 16000 Hz",
                code="unsupported_format", close_code=CLOSE_UNSUPPORTED,
            )
        enc = msg.get("encoding", "L16")
        if enc not in ("L16", "pcm16", "linear16", "audio/l16"):
            raise ProtocolError(f"encoding {enc!r} is not supported; send 16-bit little-endian PCM",
                                code="unsupported_format", close_code=CLOSE_UNSUPPORTED)
        params = msg.get("customParameters") or msg.get("params") or {}
        if not isinstance(params, dict):
            params = {}
        params = {**{k: msg[k] for k in ("application_id", "language") if k in msg}, **params}
        stream = msg.get("uuid") or msg.get("streamSid") or msg.get("callId") or msg.get("call_id") or ""
        self.start = StartFrame(
            protocol=self.protocol, stream_id=str(stream)[:100], call_sid=str(msg.get("callSid", ""))[:100],
            sample_rate=int(rate), encoding="pcm16",
            params={str(k)[:64]: str(v)[:200] for k, v in list(params.items())[:32]
                    if str(k).lower() not in _SECRET_PARAMS},
            stream_token=_stream_token(params),
        )
        return self.start


def serializer_for(protocol: str, **kw: Any) -> Serializer:
    if protocol == "twilio":
        return TwilioSerializer(**kw)
    if protocol == "fork":
        kw.pop("jitter_depth", None)
        return ForkSerializer(**kw)
    raise InvalidInput(f"unknown call protocol {protocol!r}", code="unknown_protocol")
