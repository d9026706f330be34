"""Raw GE2E embeddings of every voice-dev utterance (clean and phone channel), cached for bench/search.

    nice .venv/bin/python bench/search/embed_corpus.py [--corpus /work/shared/corpus/voice-dev] [--out F]

The cache holds embeddings only (no audio); ``ann.py`` and ``reuse_calibration.py`` read it.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from callvet.core.settings import Settings
from callvet.voice.audio import decode
from callvet.voice.encoder import load_encoder

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "cache" / "voice_dev_ge2e.npz"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="/work/shared/corpus/voice-dev")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    root = Path(args.corpus)
    enc = load_encoder(Settings().models_dir, "ge2e")
    with open(root / "manifest.csv") as fh:
        rows = list(csv.DictReader(fh))
    embs, meta = [], []
    for i, r in enumerate(rows):
        for cond in ("clean", "channel"):
            audio = decode((root / r[cond]).read_bytes()).to(16000)
            embs.append(enc.embed(audio.samples))
            meta.append((r["speaker"], r["voice"], r["family"], r["utt"], cond, float(r["dur"])))
        if i % 100 == 0:
            print(f"{i}/{len(rows)}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    m = np.array(meta, dtype=object)
    np.savez(out, emb=np.stack(embs).astype(np.float32), speaker=m[:, 0].astype(str),
             voice=m[:, 1].astype(str), family=m[:, 2].astype(str), utt=m[:, 3].astype(str),
             cond=m[:, 4].astype(str),
             dur=m[:, 5].astype(float))
    print(f"wrote {out}: {len(embs)} embeddings")


if __name__ == "__main__":
    main()
