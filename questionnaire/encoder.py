"""Serving the sentence encoder: onnxruntime plus the ``tokenizers`` library, no torch.

all-MiniLM-L6-v2 is English-centric: its WordPiece vocabulary covers CJK characters one by one but it was
trained on English pairs, so Chinese similarity from it is weak. The scorer therefore settles Chinese free
text with normalisation and character/pinyin overlap first and uses the encoder only as a tie-breaker
there (see :mod:`callvet.questionnaire.scoring`).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from callvet.core.errors import Unavailable

__all__ = ["SentenceEncoder"]


class SentenceEncoder:
    """Mean-pooled, L2-normalised sentence embeddings (384-d) from the exported ONNX graph."""

    def __init__(self, models_dir: Path, *, max_length: int = 128, threads: int = 1) -> None:
        from callvet.models import sentence

        if not sentence.is_built(models_dir):
            raise Unavailable(
                f"sentence encoder not built under {models_dir}; run `callvet models build`",
                code="sentence_model_missing",
            )
        import onnxruntime as ort
        from tokenizers import Tokenizer

        base = Path(models_dir) / sentence.ARTIFACT_DIR
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(base / "model.onnx"), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._tok = Tokenizer.from_file(str(base / "tokenizer.json"))
        self._tok.enable_truncation(max_length=max_length)
        self._tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self._lock = threading.Lock()
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            enc = self._tok.encode_batch(missing)
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            types = np.zeros_like(ids)
            with self._lock:
                (tokens,) = self._session.run(
                    None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
                )
            m = mask[..., None].astype(np.float32)
            pooled = (tokens * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            if len(self._cache) > 4096:
                self._cache.clear()
            for t, v in zip(missing, pooled, strict=True):
                self._cache[t] = v.astype(np.float32)
        return np.stack([self._cache[t] for t in texts])

    def similarity(self, a: str, b: str) -> float:
        va, vb = self.encode([a, b])
        return float(np.dot(va, vb))
