"""In-domain adaptation of the open-set null from the traffic itself (issue 18, unseen voice families).

The calibration's null (:mod:`callvet.voice.calibration`) was learned on development families. Held
out, one family whose voices are close to each other (espeak-ng variants) breaks it: its innocent
callers score far higher against its own enrolled members than the development null predicts, and
the alarm's false alarms per call were 8-15 % at a 1 % target while every other family stayed at 0.
No fixed development set can know which families a deployment will see.

The population now calling can: callvet keeps the prints of recent calls (the voice-reuse store,
:mod:`callvet.voice.callprints`). Searched against the blacklist as any call is, they are an unlabelled
and overwhelmingly innocent sample of *this* traffic against *this* list. Their best-of-list scores
``M`` are exactly the statistic an alarm thresholds, so no model of the list (its size, its prints,
which identities are close to the traffic) is needed: a Gaussian fitted to the upper half of ``M``
(least squares of the sorted scores on their normal quantiles; maxima are right-skewed, and a fit of
the whole sample's mean and sd let 2.2-2.4 % of synthetic searches alarm at a 1 % target) gives

    P(alarm | innocent) = 1 - (1 - Q((t - mean(M)) / sd(M))) ** looks

with ``looks`` the calibration's looks factor (recent-call prints are one look each). The threshold in
force is the higher of this and the calibration's own, so traffic that looks lighter than development
never makes callvet alarm more, and with too few recent calls the calibration's threshold stands.

Tried first and dropped (bench/identify/INDOMAIN.md): mapping the calibration's tail onto each
identity's own median/spread against recent calls; with a few dozen calls per identity the spread is
noisy and the list's threshold overshot (15 against the ~8.5 the held-out family needs).

Everything here is a pure function of the scores, so every replica that computes it from the same
stored recent-call prints and the same blacklist gets the same threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import erfc, ndtri

if TYPE_CHECKING:
    from callvet.core.db import Database
    from callvet.voice.calibration import Calibration

__all__ = ["MIN_RECENT_CALLS", "InDomainNull", "adapted_operating_point", "far_per_search", "fit_indomain",
           "fit_indomain_best", "recent_call_prints", "recent_checkpoint"]

#: Recent calls needed before the in-domain null is used at all.
MIN_RECENT_CALLS = 20
#: The newest calls used (bounded work per blacklist change).
MAX_RECENT_CALLS = 5000


@dataclass(frozen=True)
class InDomainNull:
    """Best-of-list scores of recent calls against one blacklist (``identities`` identities)."""

    mean: float
    sd: float
    n_calls: int
    identities: int

    def p_best(self, t: float) -> float:
        """P(a recent call's best identity scores above t), Gaussian fit."""
        return float(0.5 * erfc((t - self.mean) / (self.sd * math.sqrt(2))))

    def threshold(self, far: float, looks: float = 1.0) -> float:
        """The score at which ``far`` of innocent searches alarm, each search ``looks`` looks."""
        p = -math.expm1(math.log1p(-far) / max(looks, 1.0))
        return float(self.mean + self.sd * float(ndtri(1.0 - p)))

    def to_dict(self) -> dict[str, Any]:
        return {"recent_calls": self.n_calls, "identities": self.identities,
                "best_score_mean": round(self.mean, 4), "best_score_sd": round(self.sd, 4)}


def fit_indomain(scores: np.ndarray, *, min_calls: int = MIN_RECENT_CALLS) -> InDomainNull | None:
    """From ``scores`` (recent calls x identities: the normalised identity-level scores a search
    gives), or None with fewer than ``min_calls`` calls (the newest ``MAX_RECENT_CALLS`` are used)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] < max(int(min_calls), 2) or s.shape[1] == 0:
        return None
    return fit_indomain_best(s.max(axis=1), int(s.shape[1]), min_calls=min_calls)


def fit_indomain_best(best: np.ndarray, identities: int, *,
                      min_calls: int = MIN_RECENT_CALLS) -> InDomainNull | None:
    """From the best-of-list score of each recent call (what a search of the list returns first)."""
    b = np.asarray(best, dtype=np.float64).ravel()[-MAX_RECENT_CALLS:]
    b = b[np.isfinite(b)]
    if len(b) < max(int(min_calls), 2) or identities <= 0:
        return None
    b = np.sort(b)
    n = len(b)
    start = n // 2
    z = ndtri((np.arange(start, n) + 0.5) / n)
    a = np.vstack([np.ones_like(z), z]).T
    (mu, sigma), *_ = np.linalg.lstsq(a, b[start:], rcond=None)
    return InDomainNull(float(mu), max(float(sigma), 1e-3), n, int(identities))


def recent_checkpoint(db: Database, backend_id: str, step: int = 50) -> int:
    """The newest stored call-print id of ``backend_id`` rounded down to a multiple of ``step`` (one
    indexed query; 0 when there is none). The sample only moves when this does, every ``step`` calls,
    so the threshold does not change with every call and every replica sees the same checkpoint."""
    from callvet.core.tables import call_prints
    from sqlalchemy import func, select

    with db.connect() as conn:
        top = conn.execute(select(func.max(call_prints.c.id))
                           .where(call_prints.c.backend_id == backend_id)).scalar()
    return 0 if top is None else int(top) // step * step


def recent_call_prints(db: Database, backend_id: str, checkpoint: int, *, min_net_speech_s: float,
                       limit: int) -> list[Any]:
    """The newest ``limit`` stored call prints of ``backend_id`` with at least ``min_net_speech_s`` of
    net speech and an id at or below ``checkpoint``: every replica reading the same table picks the
    same rows."""
    from callvet.core.tables import call_prints
    from sqlalchemy import select

    with db.connect() as conn:
        return list(conn.execute(
            select(call_prints.c.id, call_prints.c.call_id, call_prints.c.vector, call_prints.c.stats_mean,
                   call_prints.c.stats_std, call_prints.c.net_speech_s)
            .where(call_prints.c.backend_id == backend_id, call_prints.c.net_speech_s >= min_net_speech_s,
                   call_prints.c.id <= checkpoint)
            .order_by(call_prints.c.id.desc()).limit(max(1, min(int(limit), MAX_RECENT_CALLS)))).all())


def _looks(cal: Calibration, looks_ratio: float) -> float:
    return 1.0 + cal.looks_gamma * math.log(max(looks_ratio, 1.0))


def far_per_search(cal: Calibration, null: InDomainNull, t: float, *, looks_ratio: float = 1.0) -> float:
    """Expected false alarms per innocent search at ``t`` under the in-domain null."""
    p = min(null.p_best(t), 1 - 1e-15)
    return float(-math.expm1(_looks(cal, looks_ratio) * math.log1p(-p)))


def adapted_operating_point(cal: Calibration, null: InDomainNull | None, tier: str, far: float,
                            identities: int, prints: int, *, looks_ratio: float = 1.0,
                            long: bool = False) -> dict[str, Any]:
    """The calibration's operating point, raised to the in-domain threshold when that is higher; a
    null fitted against a list of another size is ignored (the list changed since)."""
    long = bool(long and cal.tail_long)
    op = cal.operating_point(tier, far, identities, prints, looks_ratio=looks_ratio, long=long).to_dict()
    base = float(op["threshold"])
    op["calibration_threshold"] = round(base, 4)
    op["in_domain"] = None
    if null is None or null.identities != identities:
        return op
    t_dom = null.threshold(far, _looks(cal, looks_ratio))
    t = max(base, t_dom)
    op["in_domain"] = {**null.to_dict(), "threshold": round(t_dom, 4)}
    op["threshold"] = round(t, 4)
    op["expected_far"] = round(max(far_per_search(cal, null, t, looks_ratio=looks_ratio),
                                   cal.far(t, float(op["n_effective"]), long=long)), 6)
    op["expected_detection"] = round(cal.detection(t, long=long), 6)
    return op
