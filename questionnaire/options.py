"""Choices for choice questions: the true value hidden among plausible decoys.

Decoys come from the bank (an enum's other values, a pool of names in the true value's script) or,
for amounts, from the income bands around the truth, so the right answer never stands out by its form.
"""

from __future__ import annotations

import random
from typing import Any

from callvet.questionnaire import normalize as nz
from callvet.questionnaire.bank import Bank, Question

__all__ = ["BANDS", "choice_options", "money"]

#: Monthly income band edges (yuan) the ``bands`` matcher offers.
BANDS = [0, 3000, 5000, 8000, 12000, 20000, 30000, 50000, 80000, 150000]


def money(v: float, lang: str) -> str:
    return f"{int(v)}元" if lang == "zh" else f"{int(v):,}"


def choice_options(q: Question, truth: object, bank: Bank, lang: str,
                   rng: random.Random) -> list[dict[str, Any]]:
    """The spoken choices of a choice question: the true value among decoys (income bands around it,
    other values of its enum, or same-script names from its pool), each marked ``correct``."""
    p = q.matcher.params
    n = int(p.get("n", 4))
    opts: list[dict[str, Any]] = []
    if p.get("bands"):
        t = float(truth)  # type: ignore[arg-type]
        k = max(i for i, b in enumerate(BANDS) if b <= t)
        k = min(k, len(BANDS) - 2)
        start = max(0, min(k - rng.randrange(n), len(BANDS) - 1 - n))
        for i in range(start, start + n):
            lo, hi = BANDS[i], BANDS[i + 1]
            label = (
                f"{money(lo, lang)}到{money(hi, lang)}"
                if lang == "zh"
                else f"{money(lo, lang)} to {money(hi, lang)}"
            )
            opts.append({"label": label, "band": [lo, hi], "correct": lo <= t < hi})
        return opts
    if "enum" in p:
        values = list(bank.enums[p["enum"]])
        decoys = [v for v in values if v != truth]
        rng.shuffle(decoys)
        chosen = [str(truth), *decoys[: n - 1]]
        rng.shuffle(chosen)
        for v in chosen:
            labels = bank.enum_labels(p["enum"], v, lang)
            other = bank.enum_labels(p["enum"], v, "en" if lang == "zh" else "zh")
            opts.append(
                {
                    "label": labels[0],
                    "synonyms": labels[1:] + other + [v.replace("_", " ")],
                    "value": v,
                    "correct": v == truth,
                }
            )
        return opts
    # Decoys in the script of the true value, so the answer is never the only Chinese option.
    script = "zh" if nz.has_cjk(str(truth)) else "en"
    pool = list(bank.pools.get(p.get("pool", ""), {}).get(script, []))
    core = nz.org_core(str(truth))
    decoys = [v for v in pool if nz.org_core(v) != core]
    rng.shuffle(decoys)
    chosen = [str(truth), *decoys[: n - 1]]
    rng.shuffle(chosen)
    return [{"label": v, "synonyms": [], "value": v, "correct": v == truth} for v in chosen]
