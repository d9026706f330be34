"""Identify results and the two-tier decision (alarm / review) on top of the open-set calibration.

Split out of :mod:`callvet.voice.blacklist` so the decision rule reads in one place:

* ``alarm`` (acted on automatically) needs the best identity to reach the alarm tier's threshold *and*
  at least ``CALLVET_ALARM_MIN_SPEECH_S`` (default 6.0 s) of net speech in the probe. Below that the
  score distributions of short probes overlap too much to act on without a human (held out, a 1.5 s
  look's impostor tail is far wider than a 10 s one), so a short probe is at most ``review``.
* ``review`` (the wider net, an analyst looks at it) when the best identity reaches the review tier's
  threshold (or the alarm threshold on short speech) without an alarm.

A live call's thresholds count its looks: the review tier looks from the engine's floor (1.5 s) up to
the longest scored call, the alarm tier only from ``CALLVET_ALARM_MIN_SPEECH_S``, so it has fewer looks
to pay for (``looks_ratio`` 60 / 6 = 10 rather than 60 / 1.5 = 40).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from callvet.core.errors import InvalidInput
from callvet.core.settings import SettingsError, env_value

if TYPE_CHECKING:
    from callvet.voice.calibration import Calibration
    from callvet.voice.indomain import InDomainNull

__all__ = ["IdentifyResult", "Match", "TierConfig", "decide", "operating_points"]


@dataclass(frozen=True)
class Match:
    identity_id: int
    label: str
    score: float
    #: Calibrated log-likelihood ratio (natural log; duration-aware), None without a calibration.
    llr: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IdentifyResult:
    """Best-first identity matches of one probe.

    ``alarm`` when the best score reaches ``threshold`` (the alarm tier's operating point for this
    blacklist) on enough speech; ``review`` when it reaches the review threshold but is no alarm.
    ``tiers`` carries each tier's threshold, expected false alarms per search and expected detection.
    """

    net_speech_s: float
    alarm: bool
    threshold: float
    matches: list[Match] = field(default_factory=list)
    backend_id: str = ""
    searched: int = 0
    review: bool = False
    review_threshold: float | None = None
    tiers: dict[str, dict[str, Any]] | None = None
    #: Why a search that reached the alarm threshold is only a review (``short_speech``), else None.
    capped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "net_speech_s": round(self.net_speech_s, 3),
            "alarm": self.alarm,
            "review": self.review,
            "threshold": self.threshold,
            "review_threshold": self.review_threshold,
            "capped": self.capped,
            "tiers": self.tiers,
            "matches": [m.to_dict() for m in self.matches],
            "backend_id": self.backend_id,
            "searched": self.searched,
        }


def _setting(name: str) -> Any:
    try:
        return env_value(name)
    except SettingsError as exc:
        raise InvalidInput(str(exc), code="invalid_config") from None


@dataclass(frozen=True)
class TierConfig:
    """Targets of the two tiers, read from the environment when a blacklist opens."""

    alarm_far: float
    review_far: float
    alarm_min_speech_s: float

    @classmethod
    def from_env(cls) -> TierConfig:
        alarm, review = float(_setting("alarm_far")), float(_setting("review_far"))
        if review <= alarm:
            raise InvalidInput(f"CALLVET_REVIEW_FAR ({review}) must be above CALLVET_ALARM_FAR ({alarm})",
                               code="invalid_config")
        return cls(alarm, review, float(_setting("alarm_min_speech_s")))


def operating_points(cal: Calibration, cfg: TierConfig, identities: int, prints: int, *,
                     looks_ratio: float = 1.0, min_net_speech_s: float = 1.5,
                     in_domain: InDomainNull | None = None) -> dict[str, dict[str, Any]]:
    """Both tiers' operating points for one search of a list of ``identities`` / ``prints``.

    ``looks_ratio`` is the review tier's (last over first look, from the engine's floor); the alarm
    tier's first look is at ``alarm_min_speech_s``, so its ratio is scaled down accordingly.
    ``in_domain`` (per-identity null from recent calls, :mod:`callvet.voice.indomain`) raises each
    threshold where this traffic scores higher against these identities than the calibration expects.
    """
    n = max(identities, 1)
    p = max(prints, n)
    alarm_ratio = 1.0
    if looks_ratio > 1.0:
        alarm_ratio = max(1.0, looks_ratio * min_net_speech_s / max(cfg.alarm_min_speech_s, min_net_speech_s))
    long = cfg.alarm_min_speech_s + 1e-9 >= cal.long_min_s
    if in_domain is not None:
        from callvet.voice.indomain import adapted_operating_point

        out = {"alarm": adapted_operating_point(cal, in_domain, "alarm", cfg.alarm_far, n, p,
                                                looks_ratio=alarm_ratio, long=long),
               "review": adapted_operating_point(cal, in_domain, "review", cfg.review_far, n, p,
                                                 looks_ratio=looks_ratio)}
        out["alarm"]["min_net_speech_s"] = cfg.alarm_min_speech_s
        out["review"]["min_net_speech_s"] = min_net_speech_s
        return out
    out = {"alarm": cal.operating_point("alarm", cfg.alarm_far, n, p, looks_ratio=alarm_ratio,
                                        long=long).to_dict(),
           "review": cal.operating_point("review", cfg.review_far, n, p, looks_ratio=looks_ratio).to_dict()}
    out["alarm"]["min_net_speech_s"] = cfg.alarm_min_speech_s
    out["review"]["min_net_speech_s"] = min_net_speech_s
    return out


def decide(best: float | None, net_speech_s: float, alarm_t: float, review_t: float | None,
           alarm_min_speech_s: float) -> tuple[bool, bool, str | None]:
    """(alarm, review, capped) for a search whose best identity scored ``best``."""
    if best is None:
        return False, False, None
    if best >= alarm_t:
        if net_speech_s + 1e-9 >= alarm_min_speech_s or review_t is None:
            return True, False, None
        return False, True, "short_speech"
    return False, bool(review_t is not None and best >= review_t), None
