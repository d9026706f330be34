"""A simulated applicant population with a latent truth, for the agreement proof and for tuning data.

Each applicant gets a latent credit truth (defaults or not, from a logistic model of affordability,
delinquencies, inquiries, age and tenure that is *independent* of callvet's credit model) and a latent
fraud flag (3%). Application fields are drawn first; risk flags on the application are more likely for
fraudsters. The call investigation is drawn conditionally on the latent truth with stated error rates
(``INVESTIGATION``): a fraudster trips the voiceprint alarm 85% of the time, a genuine applicant 0.2%.

The *instant* decision is the engine's answer at application time; the *final* decision is the engine's
answer on the same application with the investigation result -- the same active policies, the
investigation graph deciding how the call's evidence changes the instant outcome.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from callvet.core.application import Application
from callvet.decision.types import Investigation

__all__ = ["INVESTIGATION", "Population", "agreement", "simulate", "write_outcomes"]

INVESTIGATION = {
    "fraud": {"voiceprint_alarm": 0.85, "verdict": {"fail": 0.70, "inconclusive": 0.20, "pass": 0.10},
              "risk_beta": (6.0, 3.0)},
    "genuine": {"voiceprint_alarm": 0.002, "verdict": {"fail": 0.003, "inconclusive": 0.007, "pass": 0.99},
                "risk_beta": (2.0, 20.0)},
}
_PRODUCTS = ["classic", "gold", "platinum", "牡丹白金卡", "牡丹金卡", ""]
_HOUSING = ["owned", "rented", "mortgaged", "family", "company", "other", None]


@dataclass
class Population:
    applications: list[Application]
    investigations: list[Investigation]
    fraud: np.ndarray
    bad: np.ndarray


def simulate(n: int, seed: int = 7, today: date = date(2026, 11, 26)) -> Population:
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < 0.03
    age = rng.integers(18, 72, n)
    age[rng.random(n) < 0.005] = 17
    income = np.round(rng.lognormal(np.log(9000), 0.6, n), -1)
    income[rng.random(n) < 0.03] = 0
    dti = rng.beta(2, 6, n)
    oblig = np.round(income * dti, -1)
    delinq = rng.poisson(0.25, n)
    inq = rng.poisson(1.2, n)
    years = np.round(rng.exponential(5, n), 1)
    cards = rng.poisson(1.5, n)
    hist = rng.integers(0, 240, n)
    logit = -3.6 + 3.0 * dti + 0.8 * delinq + 0.18 * inq - 0.015 * (age - 35) - 0.05 * np.minimum(years, 10)
    bad = (rng.random(n) < 1 / (1 + np.exp(-logit))) | fraud
    flags = np.where(fraud, rng.choice([0, 1, 2], n, p=[0.2, 0.4, 0.4]),
                     rng.choice([0, 1, 2], n, p=[0.9, 0.08, 0.02]))
    apps: list[Application] = []
    invs: list[Investigation] = []
    for i in range(n):
        born = date(today.year - int(age[i]), 1 + int(rng.integers(0, 12)), 1 + int(rng.integers(0, 28)))
        if born > today:
            born = date(born.year - 1, born.month, born.day)
        apps.append(Application.model_validate({
            "application_id": f"SIM-{seed}-{i:07d}",
            "language": "en",
            "applicant": {"name": f"Applicant {i}", "birth_date": born.isoformat(), "mobile": "13900000000"},
            "employment": {"monthly_income": float(income[i]), "years_employed": float(years[i])},
            "home": {"housing": _HOUSING[int(rng.integers(0, len(_HOUSING)))]},
            "card_product": _PRODUCTS[int(rng.integers(0, len(_PRODUCTS)))] or None,
            "requested_limit": float(rng.choice([10000, 20000, 50000, 100000])),
            "applied_at": f"{today.isoformat()}T10:00:00+00:00",
            "credit_profile": {"monthly_obligations": float(oblig[i]), "existing_cards": int(cards[i]),
                               "delinquencies_24m": int(delinq[i]), "credit_history_months": int(hist[i]),
                               "inquiries_6m": int(inq[i])},
            "risk_reasons": ["new_device", "address_mismatch"][: int(flags[i])],
        }))
        spec: dict[str, Any] = INVESTIGATION["fraud" if fraud[i] else "genuine"]
        verdicts, probs = list(spec["verdict"]), list(spec["verdict"].values())
        invs.append(Investigation(
            voiceprint_alarm=bool(rng.random() < spec["voiceprint_alarm"]),
            questionnaire={"verdict": verdicts[int(rng.choice(len(verdicts), p=probs))],
                           "risk_score": float(rng.beta(*spec["risk_beta"]))},
        ))
    return Population(apps, invs, fraud, bad.astype(bool))


def agreement(instant: list[str], final: list[str], fraud: np.ndarray) -> dict[str, Any]:
    """Agreement of firm instant decisions (approve/decline) with the final decision.

    ``all_firm``: over every firm instant decision. ``no_new_information``: excluding fraudsters, i.e.
    the cases where the call could not legitimately add information the application lacked.
    """
    ins, fin = np.asarray(instant, dtype=object), np.asarray(final, dtype=object)
    firm = np.isin(ins, ["approve", "decline"])
    same = ins == fin
    genuine = firm & ~fraud
    return {
        "n": len(ins),
        "firm_instant": int(firm.sum()),
        "firm_rate": round(float(firm.mean()), 4),
        "agreement_all_firm": round(float(same[firm].mean()), 4),
        "agreement_no_new_information": round(float(same[genuine].mean()), 4),
        "instant_mix": {k: int((ins == k).sum()) for k in ("approve", "decline", "refer_investigation",
                                                           "refer_human")},
    }


def write_outcomes(path: Path, columns: dict[str, np.ndarray], bad: np.ndarray) -> Path:
    """The tuning CSV: the pre-screen's input columns plus ``bad``."""
    keys = [k for k in columns if k != "card_product"]
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*keys, "bad"])
        for i in range(len(bad)):
            w.writerow([*(f"{float(columns[k][i]):g}" for k in keys), int(bad[i])])
    return Path(path)
