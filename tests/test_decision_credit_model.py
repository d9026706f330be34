from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from callvet.core.application import Application
from callvet.decision.credit import CreditScorer
from callvet.decision.features import extract
from callvet.models import credit
from decision_fixtures import credit_models_dir, example


def test_build_writes_card_and_onnx_equals_sklearn() -> None:
    d = credit_models_dir()
    assert credit.is_built(d)
    assert credit.build(d) == []
    card = json.loads(credit.card_path(d).read_text())
    assert card["sha256"] and card["version"].startswith("credit-")
    m = card["metrics"]
    assert m["split"] == {"development": 800, "test": 200, "cv_folds": 5, "stratified": True,
                          "seed": credit.SEED}
    assert m["selected"] == max(m["validation_auc"], key=m["validation_auc"].get)
    assert m["binning"] == "mixed" and "mean of the quintile-bin WoE and the tree-bin WoE" in card["encoding"]
    assert 0.70 < m["test_auc"] < 0.95 and 0.3 < m["test_ks"] < 0.8
    check = np.load(d / "credit" / "onnx_check.npz")
    assert check["x"].shape == (200, len(credit.FEATURES))
    got = CreditScorer(d).predict(check["x"])
    np.testing.assert_allclose(got, check["sklearn_p_bad"], atol=1e-5)
    assert len(np.unique(np.round(got, 4))) > 50


def test_missing_model_is_unavailable(tmp_path: Path) -> None:
    import pytest
    from callvet.core.errors import Unavailable

    with pytest.raises(Unavailable):
        CreditScorer(tmp_path)


def test_application_mapping_and_neutral_values() -> None:
    scorer = CreditScorer(credit_models_dir())
    empty = Application.model_validate({"application_id": "A", "language": "en", "applicant": {"name": "x"}})
    full = Application.model_validate(example())
    feats = extract([empty, full], scorer.encoder)
    ix = scorer.encoder.index
    mapped = [ix[f] for f in credit.APPLICATION_MAPPING]
    unmapped = [j for j in range(len(credit.FEATURES)) if j not in mapped]
    assert np.all(feats.x[:, unmapped] == 0.0)
    assert np.count_nonzero(feats.x[1, mapped]) >= 5
    assert feats.rules["age"][0] == 30.0 and feats.rules["has_income"][0] == 0.0
    assert feats.rules["requested_limit"][1] == 50000
    risky = Application.model_validate(example(credit_profile={"delinquencies_24m": 2},
                                               employment={"years_employed": 0.5}))
    p = scorer.predict(extract([full, risky], scorer.encoder).x)
    assert p[1] > p[0]


def test_small_batch_features_equal_vectorised() -> None:
    from callvet.decision.features import SMALL_BATCH
    from callvet.sim.decision import simulate

    scorer = CreditScorer(credit_models_dir())
    apps = simulate(SMALL_BATCH + 40, seed=5).applications
    apps[0] = Application.model_validate({"application_id": "A", "language": "en",
                                          "applicant": {"name": "x"}})
    apps[1] = Application.model_validate(example(employment={"monthly_income": 0}))
    big = extract(apps, scorer.encoder)
    for lo in range(0, 40, SMALL_BATCH):
        small = extract(apps[lo:lo + SMALL_BATCH], scorer.encoder)
        np.testing.assert_array_equal(small.x, big.x[lo:lo + SMALL_BATCH])
        for key, col in small.rules.items():
            assert list(col) == list(big.rules[key][lo:lo + SMALL_BATCH]), key


def test_selection_never_sees_labels_outside_development() -> None:
    """The benchmark compares procedures on the same splits; that is fair only if ``select_and_fit``
    uses nothing but the development rows it is given."""
    from sklearn.linear_model import LogisticRegression

    rows, y = credit.load_german_credit()
    dev = np.arange(0, 1000, 2)
    cands = [("lr", "quantile", LogisticRegression(C=0.1, max_iter=2000)),
             ("lr_tree", "tree", LogisticRegression(C=0.1, max_iter=2000))]
    a = credit.select_and_fit(rows, y, dev, cands)
    flipped = y.copy()
    flipped[1::2] = 1 - flipped[1::2]
    b = credit.select_and_fit(rows, flipped, dev, cands)
    assert a["validation_auc"] == b["validation_auc"] and a["spec"] == b["spec"]
    assert a["selected"] == max(a["validation_auc"], key=a["validation_auc"].get)


def test_tree_and_mixed_binning_are_consistent_tables() -> None:
    rows, y = credit.load_german_credit()
    q, t, m = (credit.fit_woe(rows, y, b) for b in ("quantile", "tree", "mixed"))
    for f in credit.NUMERIC:
        for spec in (q[f], t[f], m[f]):
            assert spec["edges"] == sorted(spec["edges"]) and len(spec["woe"]) == len(spec["edges"]) + 1
    x_q, x_t, x_m = (credit.encode(rows, s) for s in (q, t, m))
    num = [credit.FEATURES.index(f) for f in credit.NUMERIC]
    np.testing.assert_allclose(x_m[:, num], (x_q[:, num] + x_t[:, num]) / 2, atol=1e-6)
    assert len(t["credit_amount"]["edges"]) <= 4 < len(q["credit_amount"]["edges"]) + 1
