"""Audio front end: bytes in, validated mono float32 out.

Uploads come from analysts (recordings of any provenance) and from the call robot (raw 16-bit PCM or
G.711 mu-law at a declared rate). Everything becomes one :class:`Audio` (mono float32 in [-1, 1]) or a
typed :class:`AudioError`; nothing is half-decoded, so a bad upload never reaches the voiceprint store.

Files are decoded by libsndfile (``soundfile``): WAV with PCM 8-32 bit, float, G.711 A-law/mu-law,
IMA/MS-ADPCM, GSM 6.10 (what telephony recorders write), RF64, FLAC, Ogg Vorbis/Opus, AIFF, AU, CAF.
Only those containers are handed to it (sniffed by magic; MP3, MP4, WebM... are refused), so the rest
of libsndfile's parsers never see untrusted bytes. Before a sample is decoded, the header is checked:
sample rate within :data:`MIN_SAMPLE_RATE`..:data:`MAX_SAMPLE_RATE` (below 8 kHz is below telephone
band and gives wrong voiceprints), a WAV ``data`` size that could not be true (the 0xFFFFFFxx
placeholders, more than the upload limit) is refused, and the duration is capped (``max_seconds``), so
memory is bounded by the cap, not by how well the upload compresses (20 MiB of GSM 6.10 is 3.5 hours).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from math import gcd
from typing import Literal

import numpy as np
from callvet.core.errors import InvalidInput
from callvet.voice.g711 import alaw_decode, alaw_encode, mulaw_decode, mulaw_encode

__all__ = [
    "DEFAULT_MAX_SECONDS",
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

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000
Encoding = Literal["auto", "wav", "pcm16", "mulaw"]

_CLIP_LEVEL = 0.999
_CLIP_FRACTION = 0.02
_SILENCE_RMS = 10 ** (-70 / 20)

DEFAULT_MAX_SECONDS = 300.0

# WAVE format tags libsndfile decodes (the subformat for WAVE_FORMAT_EXTENSIBLE).
_FMT_EXTENSIBLE = 0xFFFE
_WAV_TAGS: dict[int, str] = {
    0x0001: "PCM", 0x0002: "MS-ADPCM", 0x0003: "float", 0x0006: "A-law", 0x0007: "mu-law",
    0x0011: "IMA-ADPCM", 0x0031: "GSM 6.10", 0x0040: "G.721 ADPCM",
}
# A declared data size at or above this is a streaming placeholder, never a real length.
_PLACEHOLDER_SIZE = 0xFFFFFF00
_BLOCK_FRAMES = 1 << 16

# Containers handed to libsndfile, by magic; anything else is sniffed for a helpful name or refused.
_DECODABLE_MAGIC: dict[bytes, str] = {
    b"RIFF": "WAV",
    b"RF64": "RF64",
    b"fLaC": "FLAC",
    b"OggS": "Ogg",
    b"FORM": "AIFF",
    b".snd": "AU",
    b"caff": "CAF",
}
_OTHER_MAGIC: dict[bytes, str] = {
    b"ID3": "MP3",
    b"\xff\xfb": "MP3",
    b"\xff\xf3": "MP3",
    b"\xff\xf2": "MP3",
    b"RIFX": "big-endian RIFX",
    b"\x1aE\xdf\xa3": "WebM/Matroska",
    b"#!AMR": "AMR",
}


class AudioError(InvalidInput):
    """Unusable audio; ``code`` is one of empty, not_audio, unsupported_format, bad_sample_rate,
    bad_header, too_large, too_long, nan, clipped, silence, too_little_speech."""

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


def _check_rate(sample_rate: int | None, what: str) -> int:
    if sample_rate is None:
        raise AudioError(f"{what} needs a declared sample_rate", code="bad_sample_rate")
    if not isinstance(sample_rate, int | np.integer) or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"sample rate {sample_rate} is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz",
            code="bad_sample_rate", sample_rate=sample_rate,
        )
    return int(sample_rate)


def _check_duration(frames: int, rate: int, max_seconds: float | None) -> None:
    if max_seconds is not None and frames > max_seconds * rate:
        raise AudioError(
            f"audio is {frames / rate:.1f} s long; the limit is {max_seconds:g} s", code="too_long",
            duration_s=round(frames / rate, 3), limit_s=max_seconds,
        )


def _check_riff_header(data: bytes, max_bytes: int | None) -> None:
    """The WAVE header's promises, checked before libsndfile decodes a sample (it would silently clamp
    a lying ``data`` size, and its error for an unknown codec does not say which one)."""
    if len(data) < 12 or data[8:12] != b"WAVE":
        raise AudioError("RIFF file is not WAVE", code="unsupported_format")
    pos = 12
    fmt: bytes | None = None
    data_size: int | None = None
    while pos + 8 <= len(data):
        cid = data[pos:pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4:pos + 8])
        if cid == b"fmt ":
            fmt = data[pos + 8:pos + 8 + size]
        elif cid == b"data":
            data_size = size
            break
        pos += 8 + size + (size & 1)
    if fmt is None or len(fmt) < 16:
        raise AudioError("WAV file has no usable fmt chunk", code="not_audio")
    if data_size is None:
        raise AudioError("WAV file has no data chunk", code="not_audio")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _FMT_EXTENSIBLE:
        if len(fmt) < 26:
            raise AudioError("WAVE_FORMAT_EXTENSIBLE without subformat", code="not_audio")
        (tag,) = struct.unpack("<H", fmt[24:26])
    if channels < 1:
        raise AudioError("WAV file declares zero channels", code="not_audio")
    _check_rate(rate, "WAV")
    if tag not in _WAV_TAGS:
        raise AudioError(
            f"unsupported WAV encoding (format tag {tag:#06x}, {bits} bits); use PCM, float, G.711, "
            "IMA/MS-ADPCM or GSM 6.10", code="unsupported_format", format_tag=tag,
        )
    present = len(data) - (pos + 8)
    if data_size > present and (
        data_size >= _PLACEHOLDER_SIZE or (max_bytes is not None and data_size > max_bytes)
    ):
        raise AudioError(
            f"WAV header declares {data_size} bytes of audio but the file holds {max(present, 0)}",
            code="bad_header", declared_bytes=data_size, present_bytes=max(present, 0),
        )


def _decode_file(data: bytes, container: str, max_seconds: float | None) -> Audio:
    import soundfile as sf

    try:
        f = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{container} file could not be read: {_reason(exc)}", code="not_audio") from exc
    with f:
        if f.channels < 1:
            raise AudioError(f"{container} file declares zero channels", code="not_audio")
        rate = _check_rate(f.samplerate, container)
        frames = int(f.frames) if f.frames is not None and f.frames >= 0 else 0
        _check_duration(frames, rate, max_seconds)
        out: list[np.ndarray] = []
        total = 0
        try:
            while True:
                block = f.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if len(block) == 0:
                    break
                total += len(block)
                _check_duration(total, rate, max_seconds)
                mono = block[:, 0].copy() if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
                out.append(mono)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{container} data could not be decoded: {_reason(exc)}",
                             code="not_audio") from exc
    if total == 0:
        raise AudioError(f"{container} file has no samples", code="empty")
    return Audio(np.ascontiguousarray(np.concatenate(out), dtype=np.float32), rate)


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if ">: " in text else text


def _sniff(data: bytes, table: dict[bytes, str]) -> str | None:
    for magic, name in table.items():
        if data.startswith(magic):
            return name
    if table is _OTHER_MAGIC and data[4:8] == b"ftyp":
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
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    validate: bool = True,
) -> Audio:
    """Decode an upload to mono float32 :class:`Audio` at its own rate (see :meth:`Audio.to`).

    ``auto`` reads a file header (WAV, FLAC, Ogg, ...; see the module docstring) when present; headerless
    bytes are taken as 16-bit PCM only when a ``sample_rate`` is declared. ``wav`` means "a file with a
    header", whatever its container. ``max_seconds`` (None: no cap) is checked from the header or the
    byte count before decoding. ``validate`` applies :func:`check_signal`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise AudioError("audio must be bytes", code="not_audio")
    data = bytes(data)
    if len(data) == 0:
        raise AudioError("audio upload is empty", code="empty")
    if max_bytes is not None and len(data) > max_bytes:
        raise AudioError(f"audio is {len(data)} bytes; the limit is {max_bytes}", code="too_large",
                         size=len(data), limit=max_bytes)
    container = _sniff(data, _DECODABLE_MAGIC)
    if encoding == "auto":
        if container is not None:
            encoding = "wav"
        elif (fmt := _sniff(data, _OTHER_MAGIC)) is not None:
            raise AudioError(f"{fmt} is not supported; send WAV, FLAC, Ogg, raw 16-bit PCM or mu-law",
                             code="unsupported_format")
        elif sample_rate is not None:
            encoding = "pcm16"
        else:
            raise AudioError("not an audio file; raw PCM or mu-law needs encoding and sample_rate",
                             code="not_audio")
    if encoding == "wav":
        if container is None:
            fmt = _sniff(data, _OTHER_MAGIC)
            raise AudioError(f"{fmt} is not supported; send WAV, FLAC or Ogg" if fmt else
                             "not a WAV, FLAC or Ogg file", code="unsupported_format" if fmt else "not_audio")
        if container == "WAV":
            _check_riff_header(data, max_bytes)
        elif container == "AIFF" and data[8:12] not in (b"AIFF", b"AIFC"):
            raise AudioError("IFF file is not AIFF", code="unsupported_format")
        audio = _decode_file(data, container, max_seconds)
    elif encoding == "pcm16":
        rate = _check_rate(sample_rate, "raw PCM")
        if len(data) % 2:
            raise AudioError("raw 16-bit PCM has an odd number of bytes", code="not_audio")
        _check_duration(len(data) // 2, rate, max_seconds)
        audio = Audio(np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0, rate)
    elif encoding == "mulaw":
        rate = _check_rate(sample_rate, "mu-law")
        _check_duration(len(data), rate, max_seconds)
        audio = Audio(mulaw_decode(data), rate)
    else:
        raise AudioError(f"unknown encoding {encoding!r}", code="unsupported_format")
    return check_signal(audio) if validate else audio
