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
    """Mono float32 samples in [-1, 1]; ``seq`` is the protocol's chunk number (0 when it has none)."""

    samples: np.ndarray
    sample_rate: int
    seq: int = 0
    filled: bool = False


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
