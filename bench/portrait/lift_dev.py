"""Dev harness for the response model: candidate feature definitions x model families on *dev* banks.

Why a separate script: the model was chosen here, on dev seeds (555, 556, 557) that no reported figure
uses; ``run.py quality`` then measures the chosen definition on seeds never seen. For each bank and each
candidate (a definition JSON: the shipped one, the peer) and model it prints

- ``<cand>/<model>``: top-decile lift on a later simulated card-offer campaign (30 % contacted),
- ``<cand>/<model>_E``: expected lift, the true propensity of the top decile of all customers over the
  mean (no campaign draw, so differences between candidates are not sampling noise),
- ``oracle`` / ``oracle_E``: ranking by the hidden true propensity (knows the latent taste for offers),
- ``ceiling_E``: ranking by what the observable data can tell at best: the true classes' part of the
  log-odds plus the posterior mean of the latent trait given the customer's past offers. Its coefficients
  mirror ``generate._response_logit``; keep them in step if the simulator changes.

    nice -n 10 .venv/bin/python bench/portrait/lift_dev.py --seeds 555 556 557 --models lr gbc
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

CUTOFF, AS_OF = 270, 360
HERE = Path(__file__).parent
SHIPPED = HERE.parent.parent / "portrait" / "definitions" / "response.json"
LABEL = (
    "SELECT customer_id, MAX(CASE WHEN responded THEN 1 ELSE 0 END) AS y FROM contacts "
    f"WHERE kind = 'card_offer' AND day >= {CUTOFF} GROUP BY customer_id"
)


def _model(name: str) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "lr":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
    if name == "lr_c01":
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
    if name == "gbc":
        return GradientBoostingClassifier(n_estimators=200, max_depth=3, learning_rate=0.05, subsample=0.8)
    raise SystemExit(f"unknown model {name}")


def _top(score: np.ndarray, value: np.ndarray) -> float:
    top = np.argsort(-score, kind="stable")[: score.size // 10]
    return float(value[top].mean() / value.mean())


def _ceiling(bank: Path, ids: np.ndarray, truth: Any, con: Any) -> np.ndarray:
    cu = pq.read_table(bank / "customers.parquet").to_pandas().set_index("customer_id").loc[ids]
    v, s = truth.value.cat.codes.to_numpy(), truth.stickiness.cat.codes.to_numpy()
    life = truth.lifecycle.astype(str).to_numpy()
    age, dig = cu.age.to_numpy(float), cu.digital_score.to_numpy(float)
    obs = (
        -4.3 + 0.8 * v + 0.45 * s + 1.0 * (life == "growing") - 1.4 * (life == "dormant")
        + 0.4 * (life == "new") - 0.0012 * (age - 36) ** 2 + 1.2 * (dig - 0.5)
        - 0.6 * truth.has_credit_card.to_numpy()
    )  # fmt: skip
    hist = (
        con.sql(
            "SELECT customer_id, COUNT(*) AS n, SUM(CASE WHEN responded THEN 1 ELSE 0 END) AS k "
            "FROM contacts WHERE kind = 'card_offer' GROUP BY customer_id"
        )
        .df()
        .set_index("customer_id")
        .reindex(ids)
        .fillna(0)
    )
    grid = np.linspace(-2.4, 2.4, 49)
    prior = np.exp(-(grid**2) / (2 * 0.36))
    p = 1 / (1 + np.exp(-(obs[:, None] + grid[None, :])))
    n, k = hist.n.to_numpy()[:, None], hist.k.to_numpy()[:, None]
    like = prior * p**k * (1 - p) ** (n - k)
    return obs + (like * grid).sum(1) / like.sum(1)


def run_bank(bank: Path, seed: int, candidates: list[Path], models: list[str]) -> dict[str, Any]:
    from callvet.portrait import propensity, tags
    from callvet.portrait.generate import simulate_campaign

    con = tags.connect(bank)
    truth = pq.read_table(bank / "truth.parquet").to_pandas().set_index("customer_id").sort_index()
    ids = truth.index.to_numpy()
    p_true = truth.p_response.to_numpy(float)
    camp = simulate_campaign(bank, seed=seed + 10_000, kind="card_offer", fraction=0.3)
    where = np.searchsorted(ids, camp["customer_id"])
    y_camp = camp["responded"].astype(float)
    lab = con.sql(LABEL).df()
    rows, y = np.searchsorted(ids, lab.customer_id.to_numpy()), lab.y.to_numpy()
    out: dict[str, Any] = {"seed": seed, "train_rows": int(y.size), "train_positives": int(y.sum())}
    out["oracle"] = round(_top(p_true[where], y_camp), 3)
    out["oracle_E"] = round(_top(p_true, p_true), 3)
    out["ceiling_E"] = round(_top(_ceiling(bank, ids, truth, con), p_true), 3)
    for cand in candidates:
        defn = json.loads(cand.read_text())
        fit_ids, x_fit, _ = propensity._matrix(con, defn, CUTOFF)
        sc_ids, x_sc, _ = propensity._matrix(con, defn, AS_OF)
        x_fit, x_sc = x_fit[np.argsort(fit_ids)], x_sc[np.argsort(sc_ids)]
        for name in models:
            model = _model(name).fit(x_fit[rows], y)
            score = model.predict_proba(x_sc)[:, 1]
            out[f"{cand.stem}/{name}"] = round(_top(score[where], y_camp), 3)
            out[f"{cand.stem}/{name}_E"] = round(_top(score, p_true), 3)
    con.close()
    return out


def main() -> None:
    from callvet.portrait.generate import BankSpec, generate

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[555, 556, 557])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--models", nargs="+", default=["lr"])
    ap.add_argument("--candidates", type=Path, nargs="+", default=[HERE / "peer_response_v1.json", SHIPPED])
    args = ap.parse_args()
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="liftdev-") as tmp:
            bank = Path(tmp) / "bank"
            generate(bank, BankSpec(n_customers=args.customers, seed=seed))
            print(json.dumps(run_bank(bank, seed, args.candidates, args.models)), flush=True)


if __name__ == "__main__":
    main()
