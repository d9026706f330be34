"""The portrait's links to the decision engine and the questionnaire, as one enrichment of applications.

Why an enrichment and not a call from the engine: the decision engine and the interview know nothing of
the portrait (it is a separate part, and a bank may not run it). When an application names an existing
customer (``bank_relationship.customer_id``) and the portrait is built, the adapter that receives the
application (HTTP route, CLI) passes it through :func:`enrich` first, and every effect is visible in the
application itself, hence stored with the decision and explained by it:

- decision: a customer whose ``risk_level`` tag is ``high`` gains the risk flag ``portrait_high_risk``
  (the pre-screen counts risk flags: one flag with moderate model risk, or two flags, refer the
  application to a call investigation); the tags read are returned beside the application so the route
  can record them;
- questionnaire: facts the form never held and the bank knows independently (issue 13's independent
  questions) are filled where the application left them empty: credit cards held with the bank, whether
  the salary is paid into an account, and the last repayment amount. A value the channel supplied is
  never overwritten.

One DuckDB query per batch reads the tags and facts of every named customer, so a batch of 10,000
decisions costs one scan of the bank's tables, not 10,000.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
from callvet.core.application import Application, BankRelationship

__all__ = ["HIGH_RISK_FLAG", "enrich", "lookup"]

HIGH_RISK_FLAG = "portrait_high_risk"
MAX_LOOKUP = 10_000


def _built(bank: Path) -> bool:
    return (bank / "tags.parquet").is_file() and (bank / "build.json").is_file()


def lookup(bank: Path, customer_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Tags and independent facts of each known customer among ``customer_ids`` (unknown ids are absent;
    an unbuilt bank gives an empty mapping)."""
    bank = Path(bank).resolve()
    ids = sorted({int(c) for c in customer_ids if 0 < int(c) < 2**62})
    if not ids or not _built(bank):
        return {}
    if len(ids) > MAX_LOOKUP:
        raise ValueError(f"at most {MAX_LOOKUP} customers per lookup")
    inlist = ", ".join(str(i) for i in ids)
    con = duckdb.connect(config={"threads": 1})
    try:
        rows = con.execute(
            f"""
            WITH t AS (SELECT customer_id, risk_level, value FROM read_parquet('{bank}/tags.parquet')
                       WHERE customer_id IN ({inlist})),
                 c AS (SELECT customer_id, COUNT(*) AS n FROM read_parquet('{bank}/cards.parquet')
                       WHERE customer_id IN ({inlist}) AND kind = 'credit' AND status = 'active' GROUP BY 1),
                 a AS (SELECT customer_id, MAX(CASE WHEN payroll THEN 1 ELSE 0 END) AS payroll
                       FROM read_parquet('{bank}/accounts.parquet')
                       WHERE customer_id IN ({inlist}) GROUP BY 1),
                 r AS (SELECT customer_id, arg_max(paid, month) AS paid
                       FROM read_parquet('{bank}/repayments.parquet')
                       WHERE customer_id IN ({inlist}) AND paid > 0 GROUP BY 1)
            SELECT t.customer_id, t.risk_level, t.value, c.n, a.payroll, r.paid
            FROM t LEFT JOIN c USING (customer_id) LEFT JOIN a USING (customer_id)
                   LEFT JOIN r USING (customer_id)
            """
        ).fetchall()
    finally:
        con.close()
    return {
        int(r[0]): {
            "risk_level": r[1],
            "value": r[2],
            "cards_held": int(r[3] or 0),
            "salary_account": bool(r[4]),
            "last_repayment_amount": None if r[5] is None else round(float(r[5]), 2),
        }
        for r in rows
    }


def _customer_id(app: Application) -> int | None:
    rel = app.bank_relationship
    return rel.customer_id if rel is not None else None


def enrich(
    bank: Path | None, applications: Sequence[Application]
) -> tuple[list[Application], list[dict[str, Any] | None]]:
    """The applications with the portrait's flag and facts applied, and per application the portrait
    record read (None for applicants the portrait does not know)."""
    wanted = [c for a in applications if (c := _customer_id(a)) is not None]
    known = lookup(bank, wanted) if bank is not None and wanted else {}
    if not known:
        return list(applications), [None] * len(applications)
    out: list[Application] = []
    used: list[dict[str, Any] | None] = []
    for app in applications:
        cid = _customer_id(app)
        rec = known.get(cid) if cid is not None else None
        if rec is None:
            out.append(app)
            used.append(None)
            continue
        rel = app.bank_relationship or BankRelationship()
        fill = {
            k: rec[k]
            for k in ("cards_held", "salary_account", "last_repayment_amount")
            if getattr(rel, k) is None and rec[k] is not None
        }
        update: dict[str, Any] = {"bank_relationship": rel.model_copy(update=fill)}
        if rec["risk_level"] == "high" and HIGH_RISK_FLAG not in app.risk_reasons:
            update["risk_reasons"] = [*app.risk_reasons, HIGH_RISK_FLAG]
        out.append(app.model_copy(update=update))
        used.append({"customer_id": cid, "risk_level": rec["risk_level"], "value": rec["value"],
                     "filled": sorted(fill)})
    return out, used
