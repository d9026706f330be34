"""Serve the credit model: ONNX through onnxruntime, one session per process, batched inference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from callvet.core.errors import Unavailable
from callvet.decision.features import WoeEncoder

__all__ = ["CreditScorer"]


class CreditScorer:
    """P(bad) for WoE matrices; ``version`` and ``card`` come from the model card next to the ONNX file."""

    def __init__(self, models_dir: Path) -> None:
        import onnxruntime as ort
        base = Path(models_dir) / "credit"
        if not (base / "credit.onnx").is_file():
            raise Unavailable(
                f"credit model not built under {base}: run `callvet models build` "
                "or `callvet decision train`",
                code="model_not_built",
            )
        self.card: dict[str, Any] = json.loads((base / "card.json").read_text())
        self.version: str = self.card["version"]
        self.encoder = WoeEncoder(base / "woe.json")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(base / "credit.onnx"), opts,
                                            providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def predict(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros(0)
        probs = self.session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})[1]
        return np.asarray(probs[:, 1], dtype=np.float64)
