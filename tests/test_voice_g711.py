"""The one G.711 module against scalar transcriptions of the reference encoders (mu-law: the classic
16-bit Reese/Campbell ``linear2ulaw`` with its exponent table, as in sox; A-law: Sun ``g711.c``), every
16-bit sample exhaustively, plus the codec's own invariants (decode . encode is the identity on codes)."""

from __future__ import annotations

import numpy as np
import pytest
from callvet.voice import g711

_SEG_AEND = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]


def _search(val: int, table: list[int]) -> int:
    for i, end in enumerate(table):
        if val <= end:
            return i
    return len(table)


def _exp_lut(v: int) -> int:
    """Position of the leading one of an 8-bit value above bit 0 (the 256-entry ``exp_lut``)."""
    e = 0
    while v > 1:
        v >>= 1
        e += 1
    return e


_EXP_LUT = [_exp_lut(v) for v in range(256)]


def _ref_linear2ulaw(sample: int) -> int:
    """The classic ``linear2ulaw`` (BIAS 0x84, CLIP 32635), one sample at a time."""
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, 32635) + 0x84
    exponent = _EXP_LUT[(sample >> 7) & 0xFF]
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _ref_linear2alaw(pcm: int) -> int:
    """Sun g711.c ``linear2alaw`` (13-bit magnitude)."""
    p = pcm >> 3
    if p >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        p = -p - 1
    seg = _search(p, _SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (p >> 1) & 0xF if seg < 2 else (p >> seg) & 0xF
    return aval ^ mask


ALL = np.arange(-32768, 32768, dtype=np.int64)


def test_alaw_encoder_is_the_reference_on_every_16_bit_sample() -> None:
    ours = np.frombuffer(g711.alaw_encode(ALL / 32768.0), dtype=np.uint8)
    ref = np.array([_ref_linear2alaw(int(v)) for v in ALL], dtype=np.uint8)
    assert np.array_equal(ours, ref)


def test_mulaw_encoder_is_the_reference_on_every_16_bit_sample() -> None:
    ours = np.frombuffer(g711.mulaw_encode(ALL / 32768.0), dtype=np.uint8)
    ref = np.array([_ref_linear2ulaw(int(v)) for v in ALL], dtype=np.uint8)
    assert np.array_equal(ours, ref)


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
def test_decode_then_encode_gives_back_every_code(law: str) -> None:
    enc, dec = getattr(g711, f"{law}_encode"), getattr(g711, f"{law}_decode")
    codes = bytes(range(256))
    back = enc(dec(codes))
    # mu-law has two zeros (0x7F = -0, 0xFF = +0); a zero sample is always +0.
    expect = bytes(0xFF if (law == "mulaw" and c == 0x7F) else c for c in codes)
    assert back == expect


def test_known_codes_silence_and_clipping() -> None:
    assert g711.mulaw_encode(np.zeros(3)) == bytes([g711.MULAW_SILENCE]) * 3
    assert g711.alaw_encode(np.zeros(3)) == bytes([g711.ALAW_SILENCE]) * 3
    assert g711.mulaw_decode(bytes([0x80]))[0] == pytest.approx(32124 / 32768)
    assert g711.alaw_decode(bytes([0xAA]))[0] == pytest.approx(32256 / 32768)
    assert g711.mulaw_encode(np.array([5.0, -5.0])) == bytes([0x80, 0x00])


def test_round_trip_error_is_within_half_a_step() -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(-0.99, 0.99, 20000).astype(np.float32)
    for law in ("mulaw", "alaw"):
        y = getattr(g711, f"{law}_decode")(getattr(g711, f"{law}_encode")(x))
        # segment step is 1/16 of the segment's span: relative error under ~1/32 of the value + floor
        assert np.all(np.abs(y - x) <= np.abs(x) / 30 + 2e-3)
