"""The sentence encoder: ONNX export of the packaged MiniLM (models/sentence.py) and its serving, checked
against the same model run by sentence-transformers on torch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from callvet.core.errors import Unavailable
from callvet.models import sentence
from callvet.questionnaire.encoder import SentenceEncoder


def test_missing_model_is_a_typed_error(tmp_path: Path) -> None:
    assert not sentence.is_built(tmp_path)
    with pytest.raises(Unavailable):
        SentenceEncoder(tmp_path)


def test_export_matches_the_torch_model(tmp_path: Path) -> None:
    paths = sentence.build(tmp_path)
    assert sentence.is_built(tmp_path) and all(p.stat().st_size > 0 for p in paths)
    stamp = paths[0].stat().st_mtime_ns
    assert sentence.build(tmp_path) == paths and paths[0].stat().st_mtime_ns == stamp
    texts = ["I write software for a bank", "我是工程师", "nurse", "the second one, please"]
    ours = SentenceEncoder(tmp_path).encode(texts)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(sentence.source_dir()), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    assert ours.shape == (4, 384)
    assert np.abs(ours - ref).max() < 1e-4
