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
    pcm_guid = bytes.fromhex("0100000000001000800000aa00389b71")  # KSDATAFORMAT_SUBTYPE_PCM
    ext = _fmt(0xFFFE, 1, 8000, 16) + struct.pack("<HHI", 22, 16, 4) + pcm_guid
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
    assert _code(b"fLaC\0\0\0\x22" + b"\0" * 64) == "not_audio"
    assert _code(b"OggS" + b"\0" * 64) == "not_audio"
    assert _code(b"\x1aE\xdf\xa3" + b"\0" * 64) == "unsupported_format"
    assert _code(b"ID3" + b"\0" * 64) == "unsupported_format"
    assert _code(_riff(_fmt(0x55, 1, 8000, 4), b"\0" * 100)) == "unsupported_format"
    assert _code(_riff(_fmt(2, 1, 8000, 4), b"\0" * 100)) == "not_audio"  # MS-ADPCM without coefficients
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


def _sf_bytes(x: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _similar(a: np.ndarray, b: np.ndarray) -> float:
    """Peak normalised cross-correlation within +-20 ms (codecs may shift by a frame)."""
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    full = np.correlate(a, b[160:-160], mode="valid")
    return float(full.max() / (np.linalg.norm(a) * np.linalg.norm(b[160:-160]) + 1e-12))


@pytest.mark.parametrize(("fmt", "subtype", "floor"), [
    ("WAV", "GSM610", 0.8),
    ("WAV", "IMA_ADPCM", 0.97),
    ("WAV", "MS_ADPCM", 0.97),
    ("WAV", "ULAW", 0.99),
    ("WAV", "ALAW", 0.99),
    ("FLAC", "PCM_16", 0.999),
    ("OGG", "VORBIS", 0.8),
    ("OGG", "OPUS", 0.8),
])
def test_libsndfile_codecs(speech8k: np.ndarray, fmt: str, subtype: str, floor: float) -> None:
    a = decode(_sf_bytes(speech8k, 8000, fmt, subtype))
    assert a.sample_rate == 8000 and a.samples.dtype == np.float32
    assert abs(len(a.samples) - len(speech8k)) < 400
    assert _similar(a.samples, speech8k) > floor


@pytest.mark.parametrize("args", [["-e", "gsm-full-rate"], ["-e", "ima-adpcm"], ["-e", "ms-adpcm"],
                                  ["-e", "a-law"], ["-t", "flac"]])
def test_files_written_by_sox(speech8k: np.ndarray, tmp_path: object, args: list[str]) -> None:
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("sox") is None:
        pytest.fail("sox is missing: ./dev installs it (APT_PACKAGES)")
    src, out = Path(str(tmp_path)) / "in.wav", Path(str(tmp_path)) / "out.wav"
    src.write_bytes(to_wav_bytes(speech8k, 8000))
    subprocess.run(["sox", str(src), *args, str(out)], check=True, capture_output=True)
    a = decode(out.read_bytes())
    assert a.sample_rate == 8000 and _similar(a.samples, speech8k) > 0.8


def test_rates_below_telephone_band_are_refused(speech8k: np.ndarray) -> None:
    x4 = resample(speech8k, 8000, 4000)
    assert _code(to_wav_bytes(x4, 4000)) == "bad_sample_rate"
    assert _code(_sf_bytes(x4, 4000, "FLAC", "PCM_16")) == "bad_sample_rate"
    assert _code(_sf_bytes(x4, 4000, "WAV", "GSM610")) == "bad_sample_rate"
    raw = (x4 * 32767).astype("<i2").tobytes()
    assert _code(raw, encoding="pcm16", sample_rate=4000) == "bad_sample_rate"
    assert _code(mulaw_encode(x4), encoding="mulaw", sample_rate=4000) == "bad_sample_rate"
    assert decode(to_wav_bytes(speech8k, 8000)).sample_rate == 8000


def test_duration_is_capped_from_the_header_before_decoding(
    speech8k: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    import soundfile as sf

    long = np.tile(speech8k, int(np.ceil(12 * 8000 / len(speech8k))))[: 12 * 8000]
    gsm = _sf_bytes(long, 8000, "WAV", "GSM610")
    assert decode(gsm, max_seconds=13).duration_s == pytest.approx(12, abs=0.05)

    def no_read(*_a: object, **_k: object) -> None:
        raise AssertionError("decoded past the header")

    monkeypatch.setattr(sf.SoundFile, "read", no_read)
    with pytest.raises(AudioError) as exc:
        decode(gsm, max_seconds=10)
    assert exc.value.code == "too_long" and exc.value.details["limit_s"] == 10
    assert _code(_sf_bytes(long, 8000, "FLAC", "PCM_16"), max_seconds=5) == "too_long"
    raw = (long * 32767).astype("<i2").tobytes()
    assert _code(raw, encoding="pcm16", sample_rate=8000, max_seconds=5) == "too_long"
    assert _code(mulaw_encode(long), encoding="mulaw", sample_rate=8000, max_seconds=5) == "too_long"


def test_lying_data_size_is_refused(speech8k: np.ndarray) -> None:
    wav = bytearray(to_wav_bytes(speech8k, 8000))
    at = wav.find(b"data")
    wav[at + 4:at + 8] = struct.pack("<I", 0xFFFFFFF0)
    with pytest.raises(AudioError) as exc:
        decode(bytes(wav))
    assert exc.value.code == "bad_header" and exc.value.details["declared_bytes"] == 0xFFFFFFF0
    wav[at + 4:at + 8] = struct.pack("<I", 10 * len(wav))
    assert _code(bytes(wav), max_bytes=2 * len(wav)) == "bad_header"
