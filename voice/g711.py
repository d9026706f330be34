"""G.711 (ITU-T G.711, the phone network's codec): mu-law and A-law, encode and decode, in one place.

Everything in callvet that meets telephone audio uses these: the call server decodes Twilio's mu-law
(:mod:`callvet.voice.call.frames`), the upload front end decodes raw mu-law (:mod:`callvet.voice.audio`),
the call robot encodes (:mod:`callvet.voice.call.simulate`), and the channel simulation of training and
the replay detector encode then decode (:mod:`callvet.voice.augment`, :mod:`callvet.voice.spoof.replay`).
There used to be four copies with two different encoders (the ITU segment algorithm in the robot, a
nearest-code search elsewhere); one module means a test of the codec tests what every caller gets.

The encoders are the ITU reference algorithm (as in the CCITT/Sun ``g711.c``): the 16-bit sample's
magnitude is placed in its segment and the top four bits below the segment's leading one are kept. G.711
decodes each code to the middle of its interval, so this is the nearest reconstruction level except at
segment edges, where the standard's decision levels (not the nearest level) decide. Both are vectorised
(no per-sample Python) and deterministic: silence encodes to 0xFF (mu-law) and 0xD5 (A-law), the codes
a real phone line carries for zero.

Decoding is a 256-entry table to float32 in [-1, 1] (full scale 32768).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ALAW_SILENCE",
    "MULAW_SILENCE",
    "alaw_decode",
    "alaw_encode",
    "alaw_table",
    "mulaw_decode",
    "mulaw_encode",
    "mulaw_table",
]

#: The code of a zero sample (what a lost frame is filled with).
MULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5

_MULAW_BIAS = 0x84
_MULAW_CLIP = 32635
#: Upper ends of the eight A-law segments, in 13-bit magnitude (G.711 table 1a).
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def mulaw_table() -> np.ndarray:
    """G.711 mu-law expansion of all 256 codes to float32 in [-1, 1]."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _MULAW_BIAS) << exponent) - _MULAW_BIAS
    return (np.where(sign != 0, -magnitude, magnitude) / 32768.0).astype(np.float32)


def alaw_table() -> np.ndarray:
    """G.711 A-law expansion of all 256 codes to float32 in [-1, 1]."""
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    shifted = ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, shifted)
    return (np.where(sign != 0, magnitude, -magnitude) / 32768.0).astype(np.float32)


_MULAW = mulaw_table()
_ALAW = alaw_table()
_MULAW.flags.writeable = False
_ALAW.flags.writeable = False


def _pcm16(x: np.ndarray) -> np.ndarray:
    """Float samples (full scale 1.0) to 16-bit integers, rounded and clipped, as int32."""
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int32)


def mulaw_decode(data: bytes) -> np.ndarray:
    """G.711 mu-law bytes to float32 samples in [-1, 1]."""
    return _MULAW[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes) -> np.ndarray:
    """G.711 A-law bytes to float32 samples in [-1, 1]."""
    return _ALAW[np.frombuffer(data, dtype=np.uint8)]


def mulaw_encode(x: np.ndarray) -> bytes:
    """Float samples (full scale 1.0; beyond it clips) to G.711 mu-law bytes, ITU algorithm:
    bias 0x84, clip at 32635."""
    pcm = _pcm16(x)
    sign = np.where(pcm < 0, 0x80, 0)
    mag = np.minimum(np.abs(pcm), _MULAW_CLIP) + _MULAW_BIAS
    exponent = np.clip(np.floor(np.log2(mag)).astype(np.int32) - 7, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def alaw_encode(x: np.ndarray) -> bytes:
    """Float samples (full scale 1.0; beyond it clips) to G.711 A-law bytes, ITU algorithm
    (13-bit magnitude, even bits inverted with 0x55)."""
    p = _pcm16(x) >> 3
    mask = np.where(p >= 0, 0xD5, 0x55)
    p = np.where(p >= 0, p, -p - 1)
    seg = np.searchsorted(_ALAW_SEG_END, p, side="left").astype(np.int32)
    shift = np.where(seg < 2, 1, seg)
    mantissa = (p >> np.minimum(shift, 15)) & 0x0F
    code = np.where(seg >= 8, 0x7F, (np.minimum(seg, 7) << 4) | mantissa)
    return ((code ^ mask) & 0xFF).astype(np.uint8).tobytes()
