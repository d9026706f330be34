"""Silero VAD as callvet runs it (onnxruntime, numpy state) against the silero-vad package's own
reference path (torch JIT model + ``get_speech_timestamps``), on real Asterisk recordings.

Usage: python bench/voice/vad_bench.py [--out DIR]   (needs torch: the build extra)

Prints speed ratios (ours / reference, same run) and how closely the segments agree; appends a section
to bench/voice/RESULTS_VAD.md.
"""

from __future__ import annotations

import argparse
import time
import wave
from pathlib import Path

import numpy as np
from callvet.voice.audio import resample
from callvet.voice.vad import VadStream, default_vad, net_speech_s

PROMPTS = ["vm-intro", "vm-goodbye", "vm-login", "vm-password", "vm-options", "vm-instructions",
           "vm-msginstruct", "vm-newuser", "vm-undelete", "vm-saveoper"]


def load(name: str) -> np.ndarray:
    with wave.open(f"/usr/share/asterisk/sounds/en_US_f_Allison/{name}.wav") as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768
        return resample(x, w.getframerate(), 16000)


def overlap(a: list[tuple[float, float]], b: list[tuple[float, float]], dur: float) -> float:
    """Frame agreement (10 ms frames) of two segmentations."""
    n = int(dur * 100) + 1
    ma, mb = np.zeros(n, bool), np.zeros(n, bool)
    for s, e in a:
        ma[int(s * 100):int(e * 100)] = True
    for s, e in b:
        mb[int(s * 100):int(e * 100)] = True
    return float(np.mean(ma == mb))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = ap.parse_args()
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    torch.set_num_threads(1)
    gap = np.zeros(16000, np.float32)
    x = np.concatenate([np.concatenate([load(p), gap]) for p in PROMPTS])
    dur = len(x) / 16000
    vad = default_vad()
    ref = load_silero_vad()
    vad.segments(x[:16000], 16000)
    t = time.perf_counter()
    ours = vad.segments(x, 16000)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    theirs = get_speech_timestamps(torch.from_numpy(x), ref, sampling_rate=16000, return_seconds=True)
    t_ref = time.perf_counter() - t
    theirs_seg = [(float(d["start"]), float(d["end"])) for d in theirs]
    stream = VadStream(sample_rate=8000)
    x8 = resample(x, 16000, 8000)
    t = time.perf_counter()
    for i in range(0, len(x8), 160):
        stream.feed(x8[i:i + 160])
    t_stream = time.perf_counter() - t
    frames = len(x8) // 160
    lines = [
        "# Silero VAD: callvet (onnxruntime) vs silero-vad reference (torch JIT), same run",
        "",
        f"Input: {len(PROMPTS)} Asterisk prompts (one real speaker) joined with 1 s gaps, {dur:.1f} s at "
        "16 kHz.",
        "",
        "| measure | callvet | reference | ratio |",
        "|---|---|---|---|",
        f"| offline time (s) | {t_ours:.3f} | {t_ref:.3f} | {t_ours / t_ref:.2f} |",
        f"| real-time factor | {t_ours / dur:.4f} | {t_ref / dur:.4f} | |",
        f"| segments | {len(ours)} | {len(theirs_seg)} | |",
        f"| net speech (s) | {net_speech_s(ours):.2f} | {net_speech_s(theirs_seg):.2f} | "
        f"{net_speech_s(ours) / max(net_speech_s(theirs_seg), 1e-9):.3f} |",
        "",
        f"Frame agreement (10 ms frames): {overlap(ours, theirs_seg, dur):.1%}.",
        f"Streaming (8 kHz, 20 ms chunks): {1e6 * t_stream / frames:.0f} us per 20 ms chunk "
        f"(real-time factor {t_stream / dur:.4f}).",
    ]
    print("\n".join(lines))
    (args.out / "RESULTS_VAD.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
