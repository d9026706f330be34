"""Frames: what a wire protocol turns into, and what the call pipeline consumes.

Serializers (one per wire protocol) turn socket messages into these; the pipeline never sees JSON,
base64 or byte order, so adding a protocol means adding a serializer and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "AudioFrame",
    "ClientEventFrame",
    "DtmfFrame",
    "Frame",
    "MarkFrame",
    "StartFrame",
    "StopFrame",
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


def _mulaw_table() -> np.ndarray:
    """G.711 mu-law expansion of all 256 codes to float32 in [-1, 1]."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    pcm = np.where(sign != 0, -magnitude, magnitude)
    return (pcm / 32768.0).astype(np.float32)


_MULAW = _mulaw_table()
SILENCE_BYTE = {"mulaw": b"\xff", "pcm16": b"\x00"}
BYTES_PER_SAMPLE = {"mulaw": 1, "pcm16": 2}


def decode_payload(data: bytes, encoding: str) -> np.ndarray:
    """Wire bytes -> float32 samples in [-1, 1]."""
    if encoding == "mulaw":
        return _MULAW[np.frombuffer(data, dtype=np.uint8)]
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


Frame = StartFrame | AudioFrame | MarkFrame | DtmfFrame | StopFrame | ClientEventFrame
