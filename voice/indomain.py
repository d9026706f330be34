"""In-domain adaptation of the open-set null from the traffic itself (issue 18, unseen voice families).

The calibration's null (:mod:`callvet.voice.calibration`) was learned on development families. Held
out, one family whose voices are close to each other (espeak-ng variants) breaks it: its innocent
callers score far higher against its own enrolled members than the development null predicts, and
the alarm's false alarms per call rose to 10-14 % at a 1 % target while every other family stayed
at 0. No fixed development set can know which families a deployment will see.

The population now calling can: callvet keeps the prints of recent calls (the voice-reuse store,
:mod:`callvet.voice.callprints`). Scored against the blacklist as any call is, they are an unlabelled
and overwhelmingly innocent sample of *this* traffic against *these* identities. For every identity we
take the robust location and spread of its scores against recent calls (median and the 50-84 %
quantile gap, which a few true matches among them barely move) and map the calibration's learned tail
shape onto them. An identity the traffic scores high against (a lamb, or a family the back end never
saw) gets a heavier tail, and the list's threshold pays for it:

    P(alarm | innocent) = 1 - prod_j (1 - p(m_j(t))) ** (w * looks)

with ``p`` the calibration's per-comparison tail, ``m_j(t) = m0 + (t - med_j) * s0 / s_j`` (``m0, s0``
the development null's median and spread), ``w`` the prints-per-identity factor and ``looks`` the
looks factor, exactly as :meth:`Calibration.n_effective` counts them. Without recent calls every
list keeps the calibration's own threshold; with them the list's threshold can only rise (it is
floored at the calibration's: traffic that looks lighter than development never makes callvet alarm
more). Per identity there is no such floor, so the estimation noise of light identities averages out
instead of adding up.

Everything here is a pure function of the scores, so every replica that computes it from the same
stored recent-call prints and the same blacklist gets the same threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import erfc

if TYPE_CHECKING:
    from callvet.voice.calibration import Calibration

__all__ = ["MIN_RECENT_CALLS", "InDomainNull", "adapted_operating_point", "fit_indomain"]

#: Recent calls an identity needs before its own location/spread replaces the calibration's.
MIN_RECENT_CALLS = 20
#: Quantile gap read as one standard deviation (a Gaussian's 84.1 % quantile is its mean + 1 sd).
_Q_HI = 0.8413
_MAX_CALLS = 5000


@dataclass(frozen=True)
class InDomainNull:
    """Per blacklist identity: robust median and spread of its scores against recent calls."""

    median: np.ndarray
    spread: np.ndarray
    n_calls: int

    def __len__(self) -> int:
        return len(self.median)

    def to_dict(self) -> dict[str, Any]:
        return {"recent_calls": self.n_calls, "identities": len(self),
                "median_of_medians": round(float(np.median(self.median)), 4) if len(self) else None,
                "max_median": round(float(self.median.max()), 4) if len(self) else None}


def fit_indomain(scores: np.ndarray, *, min_calls: int = MIN_RECENT_CALLS) -> InDomainNull | None:
    """From ``scores`` (recent calls x identities, the normalised identity-level scores the search
    gives), or None with fewer than ``min_calls`` calls. Bounded: at most the last 5,000 calls."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] < max(int(min_calls), 2) or s.shape[1] == 0:
        return None
    s = s[-_MAX_CALLS:]
    med = np.median(s, axis=0)
    hi = np.quantile(s, _Q_HI, axis=0)
    return InDomainNull(med, np.maximum(hi - med, 1e-3), int(s.shape[0]))


def _reference(tail: dict[str, Any]) -> tuple[float, float]:
    """Median and 50-84 % spread of a fitted null (:func:`callvet.voice.calibration.fit_tail` keeps
    its quantiles from 0.5 to 1.0)."""
    grid = np.asarray(tail["grid_t"], dtype=np.float64)
    qs = np.linspace(0.5, 1.0, len(grid))
    m0 = float(grid[0])
    return m0, max(float(np.interp(_Q_HI, qs, grid)) - m0, 1e-3)


def _p_tail_vec(tail: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """:func:`callvet.voice.calibration._p_tail` for many scores at once."""
    grid = np.asarray(tail["grid_t"], dtype=np.float64)
    probs = 1.0 - np.linspace(0.5, 1.0, len(grid))
    emp = np.interp(x, grid, probs, left=0.5, right=float(1.0 - tail["q"]))
    gauss = 0.5 * erfc((x - tail["mu"]) / (tail["sigma"] * math.sqrt(2)))
    return np.where(x >= tail["t_q"], gauss, emp)


def _p_vec(cal: Calibration, x: np.ndarray, long: bool) -> np.ndarray:
    out = np.zeros(len(x))
    for tail in cal._tails(long):
        out = np.maximum(out, _p_tail_vec(tail, x))
    return out


def far_per_search(cal: Calibration, null: InDomainNull | None, t: float, identities: int, prints: int,
                   *, looks_ratio: float = 1.0, long: bool = False) -> float:
    """Expected false alarms per innocent search at threshold ``t``."""
    n_eff = cal.n_effective(identities, prints, looks_ratio=looks_ratio)
    if n_eff <= 0:
        return 0.0
    p0 = cal.p_comparison(t, long=long)
    if null is None or len(null) != identities:
        return float(-math.expm1(n_eff * math.log1p(-min(p0, 1 - 1e-15))))
    m0, s0 = _reference(cal.tail_long if long and cal.tail_long else cal.tail)
    mapped = m0 + (t - null.median) * (s0 / null.spread)
    p = _p_vec(cal, mapped, long)
    per_identity = n_eff / identities
    return float(-math.expm1(per_identity * np.log1p(-np.minimum(p, 1 - 1e-15)).sum()))


def adapted_operating_point(cal: Calibration, null: InDomainNull | None, tier: str, far: float,
                            identities: int, prints: int, *, looks_ratio: float = 1.0,
                            long: bool = False) -> dict[str, Any]:
    """The calibration's operating point, its threshold raised until the in-domain expected false
    alarms per search meet ``far`` (bisection; the calibration's own threshold when no identity's
    recent-call scores call for more)."""
    long = bool(long and cal.tail_long)
    op = cal.operating_point(tier, far, identities, prints, looks_ratio=looks_ratio, long=long).to_dict()
    base = float(op["threshold"])
    op["calibration_threshold"] = base
    op["in_domain"] = null is not None and len(null) == identities
    if not op["in_domain"]:
        return op
    lo, hi = base, base + 1.0
    while far_per_search(cal, null, hi, identities, prints, looks_ratio=looks_ratio, long=long) > far:
        lo, hi = hi, hi + 2.0 * (hi - lo)
        if hi - base > 1e4:
            break
    if far_per_search(cal, null, lo, identities, prints, looks_ratio=looks_ratio, long=long) > far:
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            if far_per_search(cal, null, mid, identities, prints, looks_ratio=looks_ratio, long=long) > far:
                lo = mid
            else:
                hi = mid
        t = hi
    else:
        t = base
    op["threshold"] = round(float(t), 4)
    op["expected_far"] = round(far_per_search(cal, null, t, identities, prints, looks_ratio=looks_ratio,
                                              long=long), 6)
    op["expected_detection"] = round(cal.detection(t, long=long), 6)
    return op
