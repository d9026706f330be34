"""The Spark path (pyspark local mode, Java 17) computes the same tags and facts as DuckDB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from callvet.portrait import propensity, tags
from callvet.portrait.generate import BankSpec, generate

pytest.importorskip("pyspark")


@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_spark_equals_duckdb(tmp_path: Path) -> None:
    from callvet.portrait import spark as sp

    bank = tmp_path / "bank"
    generate(bank, BankSpec(n_customers=3000, seed=77))
    con = tags.connect(bank)
    propensity.train(con, tags.shipped_definition("response"), bank / "models", as_of_day=360)
    session = sp.session()
    try:
        for dim in tags.DIMENSIONS:
            if dim == "card_binding":
                continue
            defn = tags.shipped_definition(dim)
            scores = None
            if defn["kind"] == "model":
                scores, _ = propensity.score(con, defn, bank / "models", as_of_day=360)
            a = tags.run_definition(con, defn, as_of_day=360, scores=scores).to_pandas()
            b = sp.run_definition(session, bank, defn, as_of_day=360, scores=scores).to_pandas()
            a, b = (
                a.sort_values("customer_id").reset_index(drop=True),
                b.sort_values("customer_id").reset_index(drop=True),
            )
            assert list(a.columns) == list(b.columns), dim
            assert (a.tag.to_numpy() == b.tag.to_numpy()).all(), dim
            assert (a.rule.to_numpy() == b.rule.to_numpy()).all(), dim
            for col in a.columns:
                if a[col].dtype.kind in "fiu":
                    assert np.allclose(a[col].astype(float), b[col].astype(float), rtol=1e-6), (dim, col)
    finally:
        session.stop()
