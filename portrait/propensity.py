"""Propensity models (marketing response, card binding): trained from recorded campaign outcomes,
exported to ONNX like the credit model, scored with onnxruntime.

Training is temporal, so a model never sees its own label: features are computed with the history before
``cutoff_day`` (the definition's ``facts_sql`` with ``{cutoff_day}``) and the label is whether the
customer answered a campaign of that kind on or after it (``label_sql``). Scoring uses the whole window
(cutoff = as-of day). Retraining after a new campaign is the same call on the bank with the new contacts
appended, which is why skl2onnx is a runtime dependency: retraining is an operation of the running
service, not a model-building step.

Artifacts under ``bank/models/<name>/``: ``model.onnx`` and ``card.json`` (features, cutoff, metrics on a
held-out 25 % of customers, sha256, version).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from callvet.core.errors import InvalidInput, Unavailable
from callvet.portrait.tags import TagDefinition, _fill

__all__ = ["LABEL_WINDOW", "SHIFT_SD", "feature_shift", "load_card", "score", "train"]

LABEL_WINDOW = 90
# A feature whose mean at the as-of day is more than this many training standard deviations from its
# mean at the cutoff is reported as shifted (the previous response definition had one at 12-14 sd).
SHIFT_SD = 1.0
log = logging.getLogger(__name__)


def _matrix(con: Any, defn: TagDefinition, cutoff: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    tbl = con.sql(_fill(defn["facts_sql"], {"as_of_day": cutoff, "cutoff_day": cutoff})).to_arrow_table()
    names = [c for c in tbl.column_names if c != "customer_id"]
    x = np.column_stack([tbl[c].to_numpy(zero_copy_only=False).astype(np.float32) for c in names])
    return tbl["customer_id"].to_numpy(), x, names


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if 0 < y.sum() < y.size else float("nan")


def feature_shift(x_cutoff: np.ndarray, x_now: np.ndarray, names: list[str]) -> dict[str, Any]:
    """How far each feature's mean moves between the training cutoff and the as-of day, in training
    standard deviations. The model learns its weights on the cutoff's facts and applies them to the
    as-of day's, so a feature tied to the calendar or to the length of history (a flag almost nobody
    has at the cutoff and a fifth of customers have at scoring) gets a weight from a few customers and
    then floods the top of the ranking; such features are listed so an analyst sees it before
    activating (the build is not refused: some drift is legitimate)."""
    sd = np.maximum(x_cutoff.std(axis=0), 1e-9)
    smd = np.abs(x_now.mean(axis=0) - x_cutoff.mean(axis=0)) / sd
    shift = {n: round(float(v), 3) for n, v in zip(names, smd, strict=True)}
    return {
        "feature_shift_sd": shift,
        "shifted_features": sorted(n for n, v in shift.items() if v > SHIFT_SD),
    }


def train(con: Any, defn: TagDefinition, out_dir: Path, *, as_of_day: int, seed: int = 0) -> dict[str, Any]:
    """Fit a standardised logistic regression on the recorded outcomes, export ONNX, write the card."""
    import onnxruntime as ort
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cutoff = as_of_day - LABEL_WINDOW
    ids, x, names = _matrix(con, defn, cutoff)
    lab = con.sql(_fill(defn["label_sql"], {"as_of_day": as_of_day, "cutoff_day": cutoff})).to_arrow_table()
    lid, ly = lab["customer_id"].to_numpy(), lab["y"].to_numpy()
    pos = {int(c): i for i, c in enumerate(ids)}
    rows = np.array([pos[int(c)] for c in lid if int(c) in pos], dtype=np.int64)
    y = np.array([v for c, v in zip(lid, ly, strict=True) if int(c) in pos], dtype=np.int64)
    if rows.size < 200 or y.sum() < 20:
        raise InvalidInput(
            f"too few recorded outcomes to train {defn['model']}: {rows.size} contacted, "
            f"{int(y.sum())} responded (need 200 and 20)",
            code="too_few_outcomes",
        )
    rng = np.random.default_rng(seed)
    hold = rng.random(rows.size) < 0.25
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    model.fit(x[rows[~hold]], y[~hold])
    p_hold = model.predict_proba(x[rows[hold]])[:, 1]
    metrics = {
        "contacted": int(rows.size),
        "responded": int(y.sum()),
        "base_rate": round(float(y.mean()), 5),
        "holdout_auc": round(_auc(y[hold], p_hold), 4),
    }
    order = np.argsort(-p_hold)
    top = order[: max(1, order.size // 10)]
    metrics["holdout_top_decile_lift"] = round(float(y[hold][top].mean() / max(y[hold].mean(), 1e-9)), 3)
    shift = feature_shift(x, _matrix(con, defn, as_of_day)[1], names)
    metrics["shifted_features"] = shift["shifted_features"]
    if shift["shifted_features"]:
        log.warning(
            "%s: features shift between cutoff and as-of day: %s", defn["model"], shift["shifted_features"]
        )
    model.fit(x[rows], y)
    onx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset=17)
    blob = onx.SerializeToString()
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    diff = float(
        np.max(
            np.abs(
                sess.run(None, {sess.get_inputs()[0].name: x[:2000]})[1][:, 1]
                - model.predict_proba(x[:2000])[:, 1]
            )
        )
    )
    if diff > 1e-4:
        raise RuntimeError(f"ONNX export disagrees with sklearn by {diff}")
    sha = hashlib.sha256(blob).hexdigest()
    out = Path(out_dir) / defn["model"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(blob)
    card = {
        "name": defn["model"],
        "version": f"{defn['model']}-logit-{sha[:8]}",
        "sha256": sha,
        "features": names,
        "train_cutoff_day": cutoff,
        "label_window_days": LABEL_WINDOW,
        "metrics": metrics,
        "onnx_max_abs_diff_vs_sklearn": diff,
        "feature_shift_sd": shift["feature_shift_sd"],
        "coefficients": dict(
            zip(names, np.round(model[-1].coef_[0] / model[0].scale_, 6).tolist(), strict=True)
        ),
    }
    (out / "card.json").write_text(json.dumps(card, indent=1))
    return card


def load_card(models_dir: Path, name: str) -> dict[str, Any]:
    path = Path(models_dir) / name / "card.json"
    if not path.is_file():
        raise Unavailable(
            f"model {name!r} is not trained for this bank: run callvet portrait build", code="model_not_built"
        )
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def score(con: Any, defn: TagDefinition, models_dir: Path, *, as_of_day: int) -> tuple[pa.Table, str]:
    """Scores of every customer at ``as_of_day`` (Arrow: customer_id, score) and the model version."""
    import onnxruntime as ort

    card = load_card(models_dir, defn["model"])
    ids, x, names = _matrix(con, defn, as_of_day)
    if names != card["features"]:
        raise InvalidInput(
            f"the {defn['model']} definition's features {names} differ from the model's "
            f"{card['features']}: retrain",
            code="model_mismatch",
        )
    sess = ort.InferenceSession(
        str(Path(models_dir) / defn["model"] / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    p = (
        np.concatenate(
            [
                sess.run(None, {sess.get_inputs()[0].name: x[i : i + 500_000]})[1][:, 1]
                for i in range(0, max(len(x), 1), 500_000)
            ]
        )
        if len(x)
        else np.zeros(0)
    )
    return pa.table({"customer_id": ids, "score": p.astype(np.float64)}), card["version"]
