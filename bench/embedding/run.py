"""Embedding time per 3 s of speech: served ONNX encoders against the original torch models, same run.

    .venv/bin/python bench/embedding/run.py [--repeats 30] [--models-dir DIR]

Both sides run single-threaded (onnxruntime intra-op 1, torch.set_num_threads(1)) on the same 3 s of
real speech (Asterisk's recorded prompts), each including its own frontend: numpy mel + ONNX for the
served GE2E against librosa mel + torch LSTM in resemblyzer's ``embed_utterance``. ECAPA is measured
too: the imported encoder when ``models_dir/ecapa`` exists, else a randomly initialised ECAPA-TDNN of
spkrec-ecapa-voxceleb's size (C=1024, 80 mels, 192-d) -- weights do not change the arithmetic, so the
timing holds for the pretrained model. Results: median and p90 milliseconds, ratio torch/ONNX, and the
cosine between the two sides' embeddings. Written to bench/embedding/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

ECAPA_FULL = """\
n_mels: 80
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [1024, 1024, 1024, 1024, 3072]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 128
    lin_neurons: 192
"""


def _time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.9 * (len(samples) - 1))]


def _speech() -> np.ndarray:
    from speech import asterisk_concat

    wav = asterisk_concat(["vm-intro", "vm-login", "vm-goodbye"], sample_rate=16000, gap_s=0.0)
    return wav[: 3 * 16000].astype(np.float32)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _eer(same: np.ndarray, diff: np.ndarray) -> float:
    best = 1.0
    for t in np.unique(np.concatenate([same, diff])):
        frr, far = float(np.mean(same < t)), float(np.mean(diff >= t))
        best = min(best, max(frr, far))
    return best


def discrimination(enc: object) -> list[str]:
    """Raw-cosine separation of the served GE2E on the real and synthetic speakers available here.

    Same speaker: different Asterisk prompts (one real human) and the same espeak-ng voice on different
    sentences; different speakers: distinct espeak-ng voices, and espeak-ng against the human. "phone"
    passes a side through tests.speech.phone_channel (300-3400 Hz, 15 dB SNR, mu-law, 8 kHz), with
    independent noise on each side in "phone vs phone".
    """
    from scipy.signal import resample_poly
    from speech import ESPEAK_VARIANTS, asterisk_concat, espeak, phone_channel

    def phone(x: np.ndarray, seed: int = 0) -> np.ndarray:
        y = phone_channel(resample_poly(x, 1, 2).astype(np.float32), 8000, seed=len(x) + seed)
        return resample_poly(y, 2, 1).astype(np.float32)

    groups = [["vm-intro", "vm-login"], ["vm-goodbye", "vm-password", "vm-options"],
              ["vm-newuser", "vm-nomore"], ["vm-instructions"], ["vm-savedto", "vm-reenterpassword"]]
    human = [asterisk_concat(g, sample_rate=16000, gap_s=0.0) for g in groups]
    texts = ["Please confirm the last four digits of the card you applied for.",
             "I would like to know why my loan application needs another check.",
             "My date of birth is the fourth of July nineteen eighty two."]
    voices = [f"en-us+{v}" for v in ESPEAK_VARIANTS]
    synth = {v: [espeak(t, v) for t in texts] for v in voices}

    embed = enc.embed  # type: ignore[attr-defined]
    h_clean = [embed(x) for x in human]
    h_phone = [embed(phone(x)) for x in human]
    h_phone2 = [embed(phone(x, 1)) for x in human]
    s_clean = {v: [embed(x) for x in xs] for v, xs in synth.items()}
    s_phone = {v: [embed(phone(x)) for x in xs] for v, xs in synth.items()}
    s_phone2 = {v: [embed(phone(x, 1)) for x in xs] for v, xs in synth.items()}

    Prints = dict[str, list[np.ndarray]]

    def trials(a: Prints, b: Prints) -> tuple[np.ndarray, np.ndarray]:
        same, diff = [], []
        keys = list(a)
        for i, ka in enumerate(keys):
            for kb in keys[i:]:
                for ia, ea in enumerate(a[ka]):
                    for ib, eb in enumerate(b[kb]):
                        if ka == kb and ia >= ib:
                            continue
                        (same if ka == kb else diff).append(float(ea @ eb))
        return np.array(same), np.array(diff)

    rows = []
    for label, a_h, a_s, b_h, b_s in (("clean vs clean", h_clean, s_clean, h_clean, s_clean),
                                      ("clean vs phone", h_clean, s_clean, h_phone, s_phone),
                                      ("phone vs phone", h_phone2, s_phone2, h_phone, s_phone)):
        same, diff = trials({"human": a_h, **a_s}, {"human": b_h, **b_s})
        rows.append(f"| {label} | {len(same)} | {same.mean():.3f} (min {same.min():.3f}) | {len(diff)} | "
                    f"{diff.mean():.3f} (max {diff.max():.3f}) | {100 * _eer(same, diff):.1f} % |")
    return [
        "",
        "## GE2E raw-cosine separation (served ONNX encoder)",
        "",
        "Speakers: 1 real human (Asterisk prompts, 5 utterances of 2-6 s) and "
        f"{len(voices)} espeak-ng voices (3 sentences each). Synthetic voices are far easier to tell apart "
        "than real people and one human is no population: this shows the encoder and channel work end to "
        "end, it is not an accuracy claim. Scores are raw cosines before the back end and calibration. "
        "Phone: 300-3400 Hz band-pass, 15 dB SNR noise, mu-law at 8 kHz, resampled back to 16 kHz.",
        "",
        "| trials | same-speaker trials | same-speaker cosine mean | different-speaker trials "
        "| different-speaker cosine mean | EER |",
        "|---|---|---|---|---|---|",
        *rows,
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--models-dir", type=Path, default=None)
    args = parser.parse_args()

    import torch
    from callvet.core.settings import get_settings
    from callvet.models import ecapa, ge2e
    from callvet.voice.encoder import load_encoder

    torch.set_num_threads(1)
    models_dir = args.models_dir or get_settings().models_dir
    if not ge2e.is_built(models_dir):
        ge2e.build(models_dir)
    wav = _speech()
    rows: list[tuple[str, float, float, float, float, float]] = []

    onnx_ge2e = load_encoder(models_dir, "ge2e", intra_op_threads=1)
    ref = ge2e.resemblyzer_encoder()
    from resemblyzer.audio import normalize_volume

    def torch_ge2e() -> np.ndarray:
        return ref.embed_utterance(normalize_volume(wav, -30, increase_only=True))

    o_med, o_p90 = _time(lambda: onnx_ge2e.embed(wav), args.repeats)
    t_med, t_p90 = _time(torch_ge2e, args.repeats)
    rows.append(("GE2E (resemblyzer)", o_med, o_p90, t_med, t_p90, _cos(onnx_ge2e.embed(wav), torch_ge2e())))

    with tempfile.TemporaryDirectory() as tmp:
        ecapa_note = "imported"
        if (Path(models_dir) / "ecapa" / "manifest.json").is_file():
            ecapa_dir = Path(models_dir)
            src = Path(load_encoder(models_dir, "ecapa").manifest["source"]["directory"])
        else:
            ecapa_note = "random init, spkrec-ecapa-voxceleb size (timing only)"
            src = Path(tmp) / "src"
            src.mkdir()
            (src / "hyperparams.yaml").write_text(ECAPA_FULL)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from hyperpyyaml import load_hyperpyyaml
                from speechbrain.utils.checkpoints import torch_save
            torch.manual_seed(0)
            torch_save(load_hyperpyyaml(ECAPA_FULL)["embedding_model"], src / "embedding_model.ckpt")
            ecapa_dir = Path(tmp) / "models"
            ecapa.import_speechbrain(src, ecapa_dir, name="ecapa")
        hparams = ecapa.load_speechbrain(src)
        onnx_ecapa = load_encoder(ecapa_dir, "ecapa", intra_op_threads=1)
        o_med, o_p90 = _time(lambda: onnx_ecapa.embed(wav), args.repeats)
        t_med, t_p90 = _time(lambda: ecapa.encode_reference(hparams, wav), args.repeats)
        rows.append((f"ECAPA-TDNN {onnx_ecapa.dim}-d ({ecapa_note})", o_med, o_p90, t_med, t_p90,
                     _cos(onnx_ecapa.embed(wav), ecapa.encode_reference(hparams, wav))))

    import onnxruntime

    lines = [
        "# Embedding benchmark",
        "",
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, "
        f"{os.cpu_count()} cores (shared), python {platform.python_version()}, onnxruntime "
        f"{onnxruntime.__version__}, torch {torch.__version__}; {args.repeats} timed runs each after 2 "
        "warm-ups.",
        "",
        "Time to embed 3.0 s of real speech (Asterisk prompts, 16 kHz), single thread each side, frontend "
        "included. Ratio = torch time / ONNX time (higher means the served ONNX path is faster).",
        "",
        "| encoder | ONNX median ms | ONNX p90 ms | torch median ms | torch p90 ms | ratio (median) "
        "| cosine ONNX vs torch |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, om, op, tm, tp, cos in rows:
        lines.append(f"| {name} | {om:.1f} | {op:.1f} | {tm:.1f} | {tp:.1f} | {tm / om:.2f}x | {cos:.6f} |")
    lines += discrimination(onnx_ge2e)
    lines += ["", "Reproduce: `.venv/bin/python bench/embedding/run.py`.", ""]
    text = "\n".join(lines)
    (Path(__file__).parent / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
