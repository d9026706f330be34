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
    lines += ["", "Reproduce: `.venv/bin/python bench/embedding/run.py`.", ""]
    text = "\n".join(lines)
    (Path(__file__).parent / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
