"""Map card applications to the rule context (flat columns) and to the credit model's WoE vector.

One pass over the applications builds both, as numpy columns, so a batch of 50,000 costs one Python loop
and everything after it is vectorised. Missing application fields take documented neutral values: rules
see 0 obligations, 0 flags, age 30 and income 0 (which the pre-screen refers to a person); the model sees
WoE 0 ("no evidence") for every German-credit feature the application cannot supply.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from callvet.core.application import Application

__all__ = ["RULE_FIELDS", "Features", "WoeEncoder", "extract"]

RULE_FIELDS = (
    "age", "has_income", "monthly_income", "monthly_obligations", "delinquencies_24m", "inquiries_6m",
    "risk_reason_count", "requested_limit", "card_product",
)
NEUTRAL_AGE = 30.0
NO_REQUESTED_LIMIT = 1e12

_HOUSING = {"owned": "own", "mortgaged": "own", "rented": "rent", "family": "for free",
            "company": "for free"}


def _employment_since(years: float | None, income: float) -> str | None:
    if years is None:
        return "unemployed" if income <= 0 else None
    if years < 1:
        return "... < 1 year"
    if years < 4:
        return "1 <= ... < 4 years"
    if years < 7:
        return "4 <= ... < 7 years"
    return "... >= 7 years"


def _age(birth: date | None, at: date) -> float | None:
    if birth is None:
        return None
    return float(at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day)))


class WoeEncoder:
    """The WoE bins of ``woe.json``: German-credit raw values -> the model's input vector."""

    def __init__(self, path: Path) -> None:
        doc = json.loads(Path(path).read_text())
        self.features: list[str] = doc["features"]
        self.bins: dict[str, Any] = doc["bins"]
        self.index = {f: j for j, f in enumerate(self.features)}

    def numeric(self, feature: str, values: np.ndarray) -> np.ndarray:
        """WoE of a numeric column; NaN (unknown) -> 0."""
        spec = self.bins[feature]
        woe = np.asarray(spec["woe"], dtype=np.float32)
        out = woe[np.searchsorted(np.asarray(spec["edges"]), np.nan_to_num(values), side="right")]
        out[np.isnan(values)] = 0.0
        return out

    def categorical(self, feature: str, values: Sequence[str | None]) -> np.ndarray:
        table = self.bins[feature]["woe"]
        return np.fromiter((table.get(v, 0.0) if v is not None else 0.0 for v in values),
                           dtype=np.float32, count=len(values))


class Features:
    """Columns for the rules (``rules``) and the model's WoE matrix (``x``) for a batch."""

    __slots__ = ("rules", "x")

    def __init__(self, rules: dict[str, np.ndarray], x: np.ndarray) -> None:
        self.rules = rules
        self.x = x


def extract(apps: Sequence[Application], encoder: WoeEncoder, today: date | None = None) -> Features:
    n = len(apps)
    today = today or date.today()
    age = np.full(n, np.nan)
    income = np.zeros(n)
    oblig = np.zeros(n)
    delinq = np.zeros(n)
    inq = np.zeros(n)
    flags = np.zeros(n)
    req = np.full(n, NO_REQUESTED_LIMIT)
    existing = np.full(n, np.nan)
    product: list[str] = [""] * n
    emp: list[str | None] = [None] * n
    housing: list[str | None] = [None] * n
    history: list[str | None] = [None] * n
    phone: list[str | None] = [None] * n
    for i, a in enumerate(apps):
        ap = a.applicant
        at = a.applied_at.date() if a.applied_at is not None else today
        v = _age(ap.birth_date, at)
        if v is not None:
            age[i] = v
        phone[i] = "yes, registered under the customers name" if ap.mobile else "none"
        e = a.employment
        inc = e.monthly_income if e is not None and e.monthly_income is not None else 0.0
        income[i] = inc
        emp[i] = _employment_since(e.years_employed if e is not None else None, inc)
        if a.home is not None and a.home.housing is not None:
            housing[i] = _HOUSING.get(a.home.housing)
        cp = a.credit_profile
        if cp is not None:
            oblig[i] = cp.monthly_obligations or 0.0
            delinq[i] = cp.delinquencies_24m or 0
            inq[i] = cp.inquiries_6m or 0
            if cp.existing_cards is not None:
                existing[i] = min(max(cp.existing_cards, 1), 4)
            if cp.delinquencies_24m:
                history[i] = "delay in paying off in the past"
            elif cp.credit_history_months == 0:
                history[i] = "no credits taken/ all credits paid back duly"
            elif cp.credit_history_months is not None:
                history[i] = "existing credits paid back duly till now"
        flags[i] = len(a.risk_reasons)
        if a.requested_limit is not None:
            req[i] = a.requested_limit
        product[i] = a.card_product or ""
    dti = oblig / np.maximum(income, 1.0)
    rate = np.where(income > 0, 1.0 + (dti >= 0.1) + (dti >= 0.2) + (dti >= 0.35), np.nan)
    x = np.zeros((n, len(encoder.features)), dtype=np.float32)
    ix = encoder.index
    x[:, ix["age_in_years"]] = encoder.numeric("age_in_years", age)
    x[:, ix["number_of_existing_credits_at_this_bank"]] = encoder.numeric(
        "number_of_existing_credits_at_this_bank", existing)
    x[:, ix["installment_rate_in_percentage_of_disposable_income"]] = encoder.numeric(
        "installment_rate_in_percentage_of_disposable_income", rate)
    x[:, ix["present_employment_since"]] = encoder.categorical("present_employment_since", emp)
    x[:, ix["housing"]] = encoder.categorical("housing", housing)
    x[:, ix["credit_history"]] = encoder.categorical("credit_history", history)
    x[:, ix["telephone"]] = encoder.categorical("telephone", phone)
    rules = {
        "age": np.where(np.isnan(age), NEUTRAL_AGE, age),
        "has_income": (income > 0).astype(float),
        "monthly_income": income,
        "monthly_obligations": oblig,
        "delinquencies_24m": delinq,
        "inquiries_6m": inq,
        "risk_reason_count": flags,
        "requested_limit": req,
        "card_product": np.asarray(product, dtype=object),
    }
    return Features(rules, x)
