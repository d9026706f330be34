"""Decoding every accepted format and every typed error of the audio front end."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from callvet.voice.audio import (
    Audio,
    AudioError,
    alaw_decode,
    alaw_encode,
    decode,
    mulaw_decode,
    mulaw_encode,
    resample,
)
from speech import asterisk, to_wav_bytes


@pytest.fixture(scope="module")
def speech8k() -> np.ndarray:
    return asterisk("vm-intro")


def _riff(fmt: bytes, data: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
    chunks = b""
    for cid, body in [(b"fmt ", fmt), *(extra or []), (b"data", data)]:
        chunks += cid + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def _fmt(tag: int, channels: int, rate: int, bits: int) -> bytes:
    align = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


@pytest.mark.parametrize("sampwidth", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 2])
def test_int_pcm_wav(speech8k: np.ndarray, sampwidth: int, channels: int) -> None:
    a = decode(to_wav_bytes(speech8k, 8000, channels=channels, sampwidth=sampwidth))
    assert a.sample_rate == 8000 and a.samples.dtype == np.float32
    assert len(a.samples) == len(speech8k)
    tol = 0.02 if sampwidth == 1 else 1e-3
    assert np.max(np.abs(a.samples - speech8k)) < tol


def test_float32_and_extensible_wav_with_odd_chunks(speech8k: np.ndarray) -> None:
    data = speech8k.astype("<f4").tobytes()
    a = decode(_riff(_fmt(3, 1, 22050, 32), data, extra=[(b"LIST", b"odd")]))
    assert a.sample_rate == 22050 and np.allclose(a.samples, speech8k)
    ext = _fmt(0xFFFE, 1, 8000, 16) + struct.pack("<HHI", 22, 16, 4) + struct.pack("<H", 1) + b"\0" * 14
    pcm = (speech8k * 32767).astype("<i2").tobytes()
    b = decode(_riff(ext, pcm))
    assert np.max(np.abs(b.samples - speech8k)) < 1e-3


def test_g711_wav_and_raw(speech8k: np.ndarray) -> None:
    a = decode(_riff(_fmt(7, 1, 8000, 8), mulaw_encode(speech8k)))
    assert np.corrcoef(a.samples, speech8k)[0, 1] > 0.999
    b = decode(_riff(_fmt(6, 1, 8000, 8), alaw_encode(speech8k)))
    assert np.corrcoef(b.samples, speech8k)[0, 1] > 0.999
    c = decode(mulaw_encode(speech8k), encoding="mulaw", sample_rate=8000)
    assert np.allclose(c.samples, a.samples)
    raw = (speech8k * 32767).astype("<i2").tobytes()
    d = decode(raw, encoding="pcm16", sample_rate=8000)
    assert np.max(np.abs(d.samples - speech8k)) < 1e-3
    assert np.allclose(decode(raw, sample_rate=8000).samples, d.samples)


def test_g711_tables_match_itu_reference_points() -> None:
    assert mulaw_decode(bytes([0xFF]))[0] == 0.0
    assert mulaw_decode(bytes([0x80]))[0] == pytest.approx(32124 / 32768)
    assert mulaw_decode(bytes([0x00]))[0] == pytest.approx(-32124 / 32768)
    assert alaw_decode(bytes([0xD5]))[0] == pytest.approx(8 / 32768)
    assert alaw_decode(bytes([0xAA]))[0] == pytest.approx(32256 / 32768)


def test_resample_to_16k(speech8k: np.ndarray) -> None:
    a = decode(to_wav_bytes(speech8k, 8000)).to(16000)
    assert a.sample_rate == 16000 and abs(len(a.samples) - 2 * len(speech8k)) <= 1
    assert len(resample(np.ones(44100, np.float32), 44100, 16000)) == 16000
    assert isinstance(a, Audio) and a.duration_s == pytest.approx(len(speech8k) / 8000, abs=1e-3)


def _code(data: bytes, **kw: object) -> str:
    with pytest.raises(AudioError) as exc:
        decode(data, **kw)  # type: ignore[arg-type]
    return exc.value.code


def test_error_codes(speech8k: np.ndarray) -> None:
    wav = to_wav_bytes(speech8k, 8000)
    assert _code(b"") == "empty"
    assert _code(b"hello, this is not audio at all") == "not_audio"
    assert _code(b"fLaC\0\0\0\x22" + b"\0" * 64) == "unsupported_format"
    assert _code(b"ID3" + b"\0" * 64) == "unsupported_format"
    assert _code(_riff(_fmt(2, 1, 8000, 4), b"\0" * 100)) == "unsupported_format"
    assert _code(wav, encoding="mulaw") == "bad_sample_rate"
    assert _code(b"\0\1" * 100, encoding="pcm16", sample_rate=100) == "bad_sample_rate"
    assert _code(_riff(_fmt(1, 1, 1000, 16), b"\1\0" * 100)) == "bad_sample_rate"
    assert _code(wav, max_bytes=1000) == "too_large"
    assert _code(_riff(_fmt(3, 1, 8000, 32), np.array([0.1, np.nan] * 50, "<f4").tobytes())) == "nan"
    loud = np.clip(speech8k * 50, -1, 1)
    assert _code(to_wav_bytes(loud, 8000)) == "clipped"
    assert _code(to_wav_bytes(np.zeros(8000), 8000)) == "silence"
    assert _code(_riff(_fmt(1, 1, 8000, 16), b"")) == "empty"
    assert _code(wav[:30]) == "not_audio"
    assert all(issubclass(AudioError, t) for t in (Exception,))


def test_truncated_data_chunk_is_read_up_to_the_end(speech8k: np.ndarray) -> None:
    wav = to_wav_bytes(speech8k, 8000)
    a = decode(wav[: len(wav) - 1001])
    assert 0 < len(a.samples) < len(speech8k)
