"""Identity-level score: best print (max over samples) vs the identity's centroid, on the speech we have.

Speakers are espeak-ng voice variants (several are acoustically close, which makes this hard); each is
enrolled with three recordings of different sentences and probed with two other sentences. For every
(probe, identity) pair both scores are computed with the real engine (its ``calibrate``); reported are
top-1 identification accuracy, the equal error rate over all target/non-target pairs, and the false
alarm / miss rates at the engine's threshold.

    nice .venv/bin/python bench/identify/aggregate.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from callvet.core.settings import Settings
from callvet.voice.engine import VoiceEngine, Voiceprint

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests"))
from speech import espeak  # noqa: E402

SPEAKERS = ["en-us+m1", "en-us+m2", "en-us+m4", "en-us+m5", "en-us+m6", "en-us+m7", "en-us+f1", "en-us+f2",
            "en-us+f3", "en-us+f4", "en-us+f5", "en-us+klatt", "en-us+klatt2", "en-gb+m3"]
ENROL = [
    "My name is John and I would like to apply for a credit card today please.",
    "I was born in nineteen eighty two and I live on Main Street in Springfield.",
    "I work as an accountant at a small firm and I earn about four thousand a month.",
]
PROBES = [
    "The quick brown fox jumps over the lazy dog near the river bank at noon.",
    "Yes, that is correct, I requested the loan for a new car last Tuesday morning.",
]


def eer(target: np.ndarray, nontarget: np.ndarray) -> float:
    thresholds = np.sort(np.concatenate([target, nontarget]))
    best = 1.0
    for t in thresholds:
        miss, fa = float(np.mean(target < t)), float(np.mean(nontarget >= t))
        best = min(best, max(miss, fa))
    return best


def main() -> None:
    engine = VoiceEngine.from_settings(Settings())
    enrol: dict[str, list[Voiceprint]] = {}
    probes: list[tuple[str, Voiceprint]] = []
    for spk in SPEAKERS:
        enrol[spk] = [engine.voiceprint(_speech(engine, espeak(t, spk)), enrol=True) for t in ENROL]
        probes += [(spk, engine.voiceprint(_speech(engine, espeak(t, spk)))) for t in PROBES]
    results = {}
    for method in ("max", "centroid"):
        tgt, non, correct = [], [], 0
        for spk, vp in probes:
            scores = {}
            for ident, prints in enrol.items():
                if method == "max":
                    raw = np.array([float(np.dot(vp.vector, p.vector)) for p in prints])
                    stats = np.array([p.stats for p in prints])
                    scores[ident] = float(np.max(engine.calibrate(vp, raw, stats)))
                else:
                    c = np.mean([p.vector for p in prints], axis=0)
                    c /= np.linalg.norm(c)
                    stats = np.array([np.mean([p.stats for p in prints], axis=0)])
                    raw = np.array([float(np.dot(vp.vector, c))])
                    scores[ident] = float(engine.calibrate(vp, raw, stats)[0])
            correct += max(scores, key=lambda k: scores[k]) == spk
            tgt.append(scores[spk])
            non += [s for k, s in scores.items() if k != spk]
        t, n = np.array(tgt), np.array(non)
        results[method] = {
            "top1": correct / len(probes), "eer": eer(t, n),
            "miss": float(np.mean(t < engine.threshold)), "fa": float(np.mean(n >= engine.threshold)),
            "n_target": len(t), "n_nontarget": len(n),
        }
    lines = [
        "# Identity score: best print vs centroid (bench/identify/aggregate.py)",
        "",
        f"{len(SPEAKERS)} espeak-ng speakers x {len(ENROL)} enrolment sentences, "
        f"{len(PROBES)} probe sentences "
        f"each; engine {engine.backend_id}, threshold {engine.threshold}.",
        "",
        "| identity score | top-1 accuracy | EER | miss at threshold | false alarm at threshold |",
        "|---|---:|---:|---:|---:|",
    ]
    for m, r in results.items():
        lines.append(f"| {m} | {r['top1']:.3f} | {r['eer']:.3f} | {r['miss']:.3f} | {r['fa']:.4f} |")
    first = next(iter(results.values()))
    lines += ["", f"{first['n_target']} target and {first['n_nontarget']} non-target pairs.", ""]
    (HERE / "AGGREGATE.md").write_text("\n".join(lines))
    print("\n".join(lines))


def _speech(engine: VoiceEngine, x: np.ndarray) -> np.ndarray:
    from callvet.voice.audio import Audio

    return engine.analyse(Audio(x, 16000)).speech


if __name__ == "__main__":
    main()
