"""Audio front end: bytes in, validated mono float32 out.

Uploads come from analysts (WAV files of any provenance) and from the call robot (raw 16-bit PCM or
G.711 mu-law at a declared rate). Everything becomes one :class:`Audio` (mono float32 in [-1, 1]) or a
typed :class:`AudioError`; nothing is half-decoded, so a bad upload never reaches the voiceprint store.
The RIFF parser is our own because the stdlib ``wave`` module rejects float, 24-bit-extensible and
G.711 WAV files and chokes on odd chunk layouts that telephony recorders write.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from math import gcd
from typing import Literal

import numpy as np
from callvet.core.errors import InvalidInput

__all__ = [
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "Audio",
    "AudioError",
    "Encoding",
    "alaw_decode",
    "alaw_encode",
    "check_signal",
    "decode",
    "mulaw_decode",
    "mulaw_encode",
    "resample",
]

MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 192000
Encoding = Literal["auto", "wav", "pcm16", "mulaw"]

_CLIP_LEVEL = 0.999
_CLIP_FRACTION = 0.02
_SILENCE_RMS = 10 ** (-70 / 20)

_FMT_PCM = 0x0001
_FMT_FLOAT = 0x0003
_FMT_ALAW = 0x0006
_FMT_MULAW = 0x0007
_FMT_EXTENSIBLE = 0xFFFE

_OTHER_MAGIC: dict[bytes, str] = {
    b"fLaC": "FLAC",
    b"OggS": "Ogg",
    b"ID3": "MP3",
    b"\xff\xfb": "MP3",
    b"\xff\xf3": "MP3",
    b"FORM": "AIFF",
    b"RF64": "RF64",
    b"RIFX": "big-endian RIFX",
    b"\x1aE\xdf\xa3": "WebM/Matroska",
    b"caff": "CAF",
}


class AudioError(InvalidInput):
    """Unusable audio; ``code`` is one of empty, not_audio, unsupported_format, bad_sample_rate,
    too_large, nan, clipped, silence, too_little_speech."""

    code = "audio_invalid"


@dataclass(frozen=True)
class Audio:
    """Mono float32 samples in [-1, 1] at ``sample_rate``."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / float(self.sample_rate)

    def to(self, sample_rate: int) -> Audio:
        """The same audio at another rate (identity when equal)."""
        if sample_rate == self.sample_rate:
            return self
        return Audio(resample(self.samples, self.sample_rate, sample_rate), sample_rate)


def resample(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Polyphase resampling (scipy ``resample_poly``), which keeps phone-band speech undistorted."""
    x = np.asarray(x, dtype=np.float32)
    if sr_from == sr_to or len(x) == 0:
        return x
    from scipy.signal import resample_poly

    g = gcd(int(sr_from), int(sr_to))
    return resample_poly(x, sr_to // g, sr_from // g).astype(np.float32)


def _mulaw_table() -> np.ndarray:
    u = (~np.arange(256, dtype=np.int32)) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return (np.where(sign != 0, -mag, mag) / 32768.0).astype(np.float32)


def _alaw_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    shifted = ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    mag = np.where(exponent == 0, (mantissa << 4) + 8, shifted)
    return (np.where(sign != 0, mag, -mag) / 32768.0).astype(np.float32)


_MULAW = _mulaw_table()
_ALAW = _alaw_table()


def mulaw_decode(data: bytes) -> np.ndarray:
    """G.711 mu-law bytes to float32 (ITU table; what a phone network carries)."""
    return _MULAW[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes) -> np.ndarray:
    """G.711 A-law bytes to float32."""
    return _ALAW[np.frombuffer(data, dtype=np.uint8)]


def _nearest_code(table: np.ndarray, x: np.ndarray) -> bytes:
    order = np.argsort(table)
    sorted_vals = table[order]
    idx = np.clip(np.searchsorted(sorted_vals, x), 1, len(sorted_vals) - 1)
    left, right = sorted_vals[idx - 1], sorted_vals[idx]
    idx = np.where(np.abs(x - left) <= np.abs(right - x), idx - 1, idx)
    return order[idx].astype(np.uint8).tobytes()


def mulaw_encode(x: np.ndarray) -> bytes:
    """Float samples to G.711 mu-law bytes (nearest code), for channel simulation and tests."""
    return _nearest_code(_MULAW, np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0))


def alaw_encode(x: np.ndarray) -> bytes:
    """Float samples to G.711 A-law bytes (nearest code)."""
    return _nearest_code(_ALAW, np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0))


def _check_rate(sample_rate: int | None, what: str) -> int:
    if sample_rate is None:
        raise AudioError(f"{what} needs a declared sample_rate", code="bad_sample_rate")
    if not isinstance(sample_rate, int | np.integer) or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"sample rate {sample_rate} is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz",
            code="bad_sample_rate", sample_rate=sample_rate,
        )
    return int(sample_rate)


def _int24(raw: bytes) -> np.ndarray:
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    return np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float32) / float(1 << 23)


def _decode_wav(data: bytes) -> Audio:
    if len(data) < 12 or data[8:12] != b"WAVE":
        raise AudioError("RIFF file is not WAVE", code="unsupported_format")
    pos = 12
    fmt: bytes | None = None
    pcm: bytes | None = None
    while pos + 8 <= len(data):
        cid = data[pos:pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4:pos + 8])
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = body
        elif cid == b"data":
            pcm = body
            if fmt is not None:
                break
        pos += 8 + size + (size & 1)
    if fmt is None or len(fmt) < 16:
        raise AudioError("WAV file has no usable fmt chunk", code="not_audio")
    if pcm is None:
        raise AudioError("WAV file has no data chunk", code="not_audio")
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _FMT_EXTENSIBLE:
        if len(fmt) < 26:
            raise AudioError("WAVE_FORMAT_EXTENSIBLE without subformat", code="not_audio")
        (tag,) = struct.unpack("<H", fmt[24:26])
    if channels < 1:
        raise AudioError("WAV file declares zero channels", code="not_audio")
    rate = _check_rate(rate, "WAV")
    width = bits // 8 if bits % 8 == 0 else 0
    supported = (
        (tag == _FMT_PCM and width in (1, 2, 3, 4))
        or (tag == _FMT_FLOAT and width in (4, 8))
        or (tag in (_FMT_MULAW, _FMT_ALAW) and width == 1)
    )
    if not supported:
        raise AudioError(
            f"unsupported WAV encoding (format tag {tag:#06x}, {bits} bits); use PCM 8/16/24/32-bit, "
            "float32 or G.711", code="unsupported_format",
        )
    frame = width * channels
    if block_align not in (0, frame):
        raise AudioError(f"WAV block_align {block_align} does not match {channels}x{bits} bits",
                         code="not_audio")
    usable = len(pcm) - len(pcm) % frame
    raw = pcm[:usable]
    if usable == 0:
        raise AudioError("WAV file has no samples", code="empty")
    if tag == _FMT_FLOAT:
        x = np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8").astype(np.float32)
    elif tag == _FMT_MULAW:
        x = mulaw_decode(raw)
    elif tag == _FMT_ALAW:
        x = alaw_decode(raw)
    elif width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        x = _int24(raw)
    else:
        x = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return Audio(np.ascontiguousarray(x, dtype=np.float32), rate)


def _sniff(data: bytes) -> str | None:
    for magic, name in _OTHER_MAGIC.items():
        if data.startswith(magic):
            return name
    if data[4:8] == b"ftyp":
        return "MP4/M4A"
    return None


def check_signal(audio: Audio) -> Audio:
    """Reject signals no voiceprint should be made from: NaN/inf, heavy clipping, digital silence."""
    x = audio.samples
    if len(x) == 0:
        raise AudioError("audio has no samples", code="empty")
    if not np.all(np.isfinite(x)):
        raise AudioError("audio contains NaN or infinite samples", code="nan")
    clipped = float(np.mean(np.abs(x) >= _CLIP_LEVEL))
    if clipped > _CLIP_FRACTION:
        raise AudioError(
            f"{clipped:.1%} of samples are clipped at full scale (limit {_CLIP_FRACTION:.0%}); "
            "lower the recording gain", code="clipped", clipped_fraction=round(clipped, 4),
        )
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    if rms < _SILENCE_RMS:
        raise AudioError("audio is silent (below -70 dBFS)", code="silence")
    return audio


def decode(
    data: bytes,
    *,
    encoding: Encoding = "auto",
    sample_rate: int | None = None,
    max_bytes: int | None = None,
    validate: bool = True,
) -> Audio:
    """Decode an upload to mono float32 :class:`Audio` at its own rate (see :meth:`Audio.to`).

    ``auto`` reads a RIFF/WAVE header when present; headerless bytes are taken as 16-bit PCM only when
    a ``sample_rate`` is declared. ``validate`` applies :func:`check_signal`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise AudioError("audio must be bytes", code="not_audio")
    data = bytes(data)
    if len(data) == 0:
        raise AudioError("audio upload is empty", code="empty")
    if max_bytes is not None and len(data) > max_bytes:
        raise AudioError(f"audio is {len(data)} bytes; the limit is {max_bytes}", code="too_large",
                         size=len(data), limit=max_bytes)
    if encoding == "auto":
        if data[:4] == b"RIFF":
            encoding = "wav"
        elif (fmt := _sniff(data)) is not None:
            raise AudioError(f"{fmt} is not supported; send WAV, raw 16-bit PCM or mu-law",
                             code="unsupported_format")
        elif sample_rate is not None:
            encoding = "pcm16"
        else:
            raise AudioError("not a WAV file; raw PCM or mu-law needs encoding and sample_rate",
                             code="not_audio")
    if encoding == "wav":
        if data[:4] != b"RIFF":
            fmt = _sniff(data)
            raise AudioError(f"{fmt} is not supported; send WAV" if fmt else "not a RIFF/WAVE file",
                             code="unsupported_format" if fmt else "not_audio")
        audio = _decode_wav(data)
    elif encoding == "pcm16":
        rate = _check_rate(sample_rate, "raw PCM")
        if len(data) % 2:
            raise AudioError("raw 16-bit PCM has an odd number of bytes", code="not_audio")
        audio = Audio(np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0, rate)
    elif encoding == "mulaw":
        rate = _check_rate(sample_rate, "mu-law")
        audio = Audio(mulaw_decode(data), rate)
    else:
        raise AudioError(f"unknown encoding {encoding!r}", code="unsupported_format")
    return check_signal(audio) if validate else audio
