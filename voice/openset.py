"""Fitting the open-set calibration from development speech, and the leave-families-out protocol.

Shared by ``callvet voiceprint calibrate`` (which writes the shipped ``calibration.json`` + ``cohort.npz``)
and ``bench/identify/openset.py`` (which measures false alarms per call on held-out voice families), so
the figures are those of the procedure that ships.

Every score the calibration sees is *out of fold*: the back end and the cohort used to score a speaker
were fitted without that speaker's voice family, because a back end scores the speakers it was trained
on far lower as impostors than voices it never saw (that is the drift the issue measured: -8.5 median
best score of unknown callers against a threshold of -16.8 fitted on training speakers).

Calls are simulated as the call server runs them: a speaker's phone-channel utterances joined into
~10 s calls, a look at 1.5 s of net speech and then every 3 s, each look the mean of the window
embeddings so far (the :class:`~callvet.voice.engine.Accumulator`'s print).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from callvet.voice.backend import RECOMMENDED_CONFIG, Backend, BackendConfig, TrainingSet, fit_backend
from callvet.voice.calibration import DEFAULT_TOP_N, Calibration, SNorm, fit_calibration

__all__ = [
    "DevSet",
    "Scores",
    "call_looks",
    "family_folds",
    "fit_openset",
    "score_heldout",
]

#: Net speech at which a live call is looked at (the call server's first verdict, then every
#: ``CALLVET_CALL_RESCORE_S``); the last look is the call's end.
LOOKS_S = (1.5, 4.5, 7.5)
CALL_S = 10.0
#: Net speech from which a look may raise an alarm (shorter looks are review at most).
LONG_MIN_S = 6.0
COHORT_MAX = 2000


@dataclass
class DevSet:
    """Raw encoder embeddings of development utterances (one row per utterance and condition)."""

    emb: np.ndarray
    aug: np.ndarray
    partials: list[np.ndarray]
    net_s: np.ndarray
    speaker: np.ndarray
    family: np.ndarray
    cond: np.ndarray
    name: np.ndarray

    def rows(self, mask: np.ndarray) -> np.ndarray:
        return np.flatnonzero(mask)

    def training(self, mask: np.ndarray) -> TrainingSet:
        return TrainingSet(self.emb[mask], self.speaker[mask], self.aug[mask])


def family_folds(families: Sequence[str], k: int) -> list[list[str]]:
    """Whole families into ``k`` groups of similar speaker counts (largest first, deterministic)."""
    counts: dict[str, int] = {}
    for f in families:
        counts[f] = counts.get(f, 0) + 1
    groups: list[list[str]] = [[] for _ in range(k)]
    sizes = [0] * k
    for fam in sorted(counts, key=lambda f: (-counts[f], f)):
        i = int(np.argmin(sizes))
        groups[i].append(fam)
        sizes[i] += counts[fam]
    return [sorted(g) for g in groups if g]


def call_looks(partials: Sequence[np.ndarray], net: Sequence[float],
               looks: Sequence[float] = LOOKS_S) -> list[tuple[np.ndarray, float]]:
    """(mean window embedding, net speech) at each look of one call made of these utterances."""
    total = float(sum(net))
    out: list[tuple[np.ndarray, float]] = []
    for t in [*[t for t in looks if t < total - 0.5], total]:
        acc, parts = 0.0, []
        for p, d in zip(partials, net, strict=True):
            if acc >= t:
                break
            take = d if acc + d <= t else t - acc
            k = max(1, math.ceil(len(p) * take / max(d, 1e-6)))
            parts.append(p[:k])
            acc += take
        m = np.concatenate(parts).mean(axis=0)
        out.append(((m / max(float(np.linalg.norm(m)), 1e-12)).astype(np.float32), float(t)))
    return out


def _calls(rows: Sequence[int], net: np.ndarray, target_s: float = CALL_S, *,
           overlap: bool = False) -> list[list[int]]:
    """A speaker's utterances as ~``target_s`` calls: consecutive runs, or (``overlap``) one call
    starting at every utterance, wrapping around (more innocent calls from few speakers; correlated)."""
    if overlap and len(rows) > 1:
        calls = []
        for start in range(len(rows)):
            cur, acc = [], 0.0
            for k in range(len(rows)):
                r = int(rows[(start + k) % len(rows)])
                cur.append(r)
                acc += float(net[r])
                if acc >= target_s:
                    break
            if acc >= 0.6 * target_s:
                calls.append(cur)
        return calls
    out: list[list[int]] = []
    cur: list[int] = []
    acc = 0.0
    for i in rows:
        cur.append(int(i))
        acc += float(net[i])
        if acc >= target_s:
            out.append(cur)
            cur, acc = [], 0.0
    if cur and acc >= 0.6 * target_s:
        out.append(cur)
    elif cur and out:
        out[-1] += cur
    return out


@dataclass
class Scores:
    """Identity-level normalised scores of simulated calls against a blacklist of models.

    ``looks[c]`` (n_looks, n_identities) for call c; ``truth[c]`` the index of the call's own identity
    or -1 (innocent); ``look_s[c]`` net speech of each look; ``family[c]`` of the caller.
    """

    looks: list[np.ndarray]
    look_s: list[np.ndarray]
    truth: np.ndarray
    family: np.ndarray
    speaker: np.ndarray
    model_prints: np.ndarray
    print_scores: list[np.ndarray]


class Scorer:
    """Back end + s-norm cohort: raw embeddings -> prints -> normalised scores (what the service does)."""

    def __init__(self, backend: Backend | Any, cohort_raw: np.ndarray | None, top_n: int = DEFAULT_TOP_N):
        self.backend = backend
        self.snorm: SNorm | None = None
        if backend is not None and cohort_raw is not None and len(cohort_raw):
            cv = backend.project(cohort_raw)
            self.snorm = SNorm(cv, backend.cohort_stats(cv), backend.calibrate, top_n)

    def prints(self, raw: np.ndarray) -> np.ndarray:
        if self.backend is None:
            r = np.atleast_2d(raw)
            return (r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        return self.backend.project(raw)

    def model_print(self, raw: np.ndarray) -> np.ndarray:
        if self.backend is None:
            m = np.atleast_2d(raw).mean(axis=0)
            return (m / max(float(np.linalg.norm(m)), 1e-12)).astype(np.float32)
        return self.backend.project_mean(raw)

    def stats(self, prints: np.ndarray) -> np.ndarray:
        if self.backend is None:
            return np.tile([0.0, 1.0], (len(prints), 1))
        return np.asarray(self.backend.cohort_stats(prints))

    def moments(self, prints: np.ndarray) -> np.ndarray | None:
        return None if self.snorm is None else self.snorm.moments(prints, self.stats(prints))

    def score(self, probes: np.ndarray, models: np.ndarray, pm: np.ndarray | None = None,
              mm: np.ndarray | None = None, *, normalise: bool = True) -> np.ndarray:
        raw = probes @ models.T
        if self.backend is None:
            return raw
        ps, ms = self.stats(probes), self.stats(models)
        s = np.stack([self.backend.calibrate(raw[i], ps[i], ms) for i in range(len(probes))])
        if not normalise or self.snorm is None:
            return s
        pm = self.moments(probes) if pm is None else pm
        mm = self.moments(models) if mm is None else mm
        return np.stack([SNorm.apply(s[i], pm[i:i + 1], mm) for i in range(len(probes))])


def score_heldout(scorer: Scorer, dev: DevSet, fraudsters: Sequence[str], innocents: Sequence[str], *,
                  filler_raw: np.ndarray | None = None, n_enrol: int = 3, enrol_augment: bool = True,
                  normalise: bool = True, overlap: bool = False, probe_fraudsters: bool = True) -> Scores:
    """Enrol each fraudster (``n_enrol`` channel utterances, one print each, with channel copies); fill
    the list with ``filler_raw`` identities (one print each); simulate ~10 s calls of every fraudster's
    remaining (unless not ``probe_fraudsters``) and every innocent's channel utterances; identity score
    = best over its prints."""
    chan = dev.cond == "channel"
    model_raw: list[np.ndarray] = []
    owner: list[int] = []
    enrol_s: list[float] = []
    probe_rows: dict[str, list[int]] = {}
    for j, spk in enumerate(fraudsters):
        rows = np.flatnonzero(chan & (dev.speaker == spk))
        for r in rows[:n_enrol]:
            raw = dev.emb[r][None, :]
            if enrol_augment and dev.aug.shape[1]:
                raw = np.concatenate([raw, dev.aug[r]])
            model_raw.append(scorer.model_print(raw))
            owner.append(j)
            enrol_s.append(float(dev.net_s[r]))
        if probe_fraudsters:
            probe_rows[spk] = list(rows[n_enrol:])
    for spk in innocents:
        probe_rows[spk] = list(np.flatnonzero(chan & (dev.speaker == spk)))
    n_id = len(fraudsters)
    models = np.stack(model_raw) if model_raw else np.zeros((0, 0), np.float32)
    if filler_raw is not None and len(filler_raw):
        fp = scorer.prints(filler_raw)
        models = np.concatenate([models, fp]) if len(models) else fp
        owner += list(range(n_id, n_id + len(fp)))
        n_id += len(fp)
    owner_a = np.asarray(owner)
    mm = scorer.moments(models) if normalise else None
    looks, look_s, truth, fam, spk_out, pscores = [], [], [], [], [], []
    index = {s: i for i, s in enumerate(fraudsters)}
    for spk, rows in probe_rows.items():
        for call in _calls(rows, dev.net_s, overlap=overlap and spk not in index):
            lk = call_looks([dev.partials[r] for r in call], [float(dev.net_s[r]) for r in call])
            probes = scorer.prints(np.stack([v for v, _ in lk]))
            pm = scorer.moments(probes) if normalise else None
            s = scorer.score(probes, models, pm, mm, normalise=normalise)
            ident = np.full((len(lk), n_id), -np.inf)
            for i in range(len(lk)):
                np.maximum.at(ident[i], owner_a, s[i])
            looks.append(ident)
            pscores.append(s)
            look_s.append(np.array([d for _, d in lk]))
            truth.append(index.get(spk, -1))
            fam.append(str(dev.family[dev.speaker == spk][0]))
            spk_out.append(spk)
    return Scores(looks, look_s, np.asarray(truth), np.asarray(fam), np.asarray(spk_out), owner_a, pscores)


def _inner_scores(dev: DevSet, mask: np.ndarray, fit: Callable[[TrainingSet], Any], k: int,
                  progress: Callable[[str], None] | None) -> dict[str, list[Any]]:
    """Out-of-fold scores inside ``mask``: per inner family fold, a back end + cohort fitted on the
    other inner folds score this fold's speakers (half enrolled, half innocent, then swapped)."""
    fams = sorted(set(dev.family[mask]))
    spk_fam = {s: f for s, f in zip(dev.speaker[mask], dev.family[mask], strict=True)}
    folds = family_folds([spk_fam[s] for s in sorted(spk_fam)], k) if len(fams) >= k else [[f] for f in fams]
    out: dict[str, list[Any]] = {"null": [], "null_d": [], "null_md": [], "tar": [], "tar_d": [],
                                 "tar_md": [], "call_max": [], "call_last": [], "id_max": [],
                                 "print_null": [], "target_call": [], "target_call_long": [],
                                 "call_ratio": [], "null_fam": []}
    for i, held in enumerate(folds):
        if progress:
            progress(f"inner fold {i + 1}/{len(folds)}: {', '.join(held)}")
        test = mask & np.isin(dev.family, held)
        train = mask & ~test
        if len(set(dev.speaker[train])) < 4 or not test.any():
            continue
        backend = fit(dev.training(train))
        scorer = Scorer(backend, _cohort_raw(dev, train))
        speakers = sorted(set(dev.speaker[test]))
        rng = np.random.default_rng(i)
        order = list(rng.permutation(speakers))
        halves = [order[::2], order[1::2]]
        for a, b in ((0, 1), (1, 0)):
            sc = score_heldout(scorer, dev, halves[a], halves[b])
            md = 3.0 * np.mean(dev.net_s[dev.cond == "channel"])
            for c in range(len(sc.looks)):
                ident = sc.looks[c]
                t = sc.truth[c]
                non = np.ones(ident.shape[1], bool)
                if t >= 0:
                    non[t] = False
                    out["tar"] += list(ident[:, t])
                    out["tar_d"] += list(sc.look_s[c])
                    out["tar_md"] += [md] * len(ident)
                    out["target_call"].append(float(ident[:, t].max()))
                    long = sc.look_s[c] >= LONG_MIN_S
                    if long.any():
                        out["target_call_long"].append(float(ident[long, t].max()))
                null = ident[:, non]
                out["null"] += list(null.ravel())
                out["null_d"] += list(np.repeat(sc.look_s[c], null.shape[1]))
                out["null_md"] += [md] * null.size
                out["null_fam"] += [str(sc.family[c])] * null.size
                out["call_max"] += list(null.max(axis=0))
                out["call_last"] += list(null[-1])
                out["call_ratio"].append(float(sc.look_s[c][-1] / sc.look_s[c][0]))
                pn = sc.print_scores[c][-1][np.isin(sc.model_prints, np.flatnonzero(non))]
                out["print_null"] += list(pn)
                out["id_max"] += list(null[-1])
    return out


def _cohort_raw(dev: DevSet, mask: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(mask)
    if len(rows) > COHORT_MAX:
        rows = np.sort(np.random.default_rng(0).choice(rows, COHORT_MAX, replace=False))
    return dev.emb[rows]


def _exceed(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.array([(x > v).mean() for v in t])


def fit_openset(dev: DevSet, mask: np.ndarray, *, backend: Any = None,
                config: BackendConfig = RECOMMENDED_CONFIG, inner_folds: int = 3,
                progress: Callable[[str], None] | None = None,
                fit: Callable[[TrainingSet], Any] | None = None) -> tuple[Calibration, Any, dict[str, Any]]:
    """Calibration for ``backend`` (fitted here on ``mask`` when None) from out-of-fold scores inside
    ``mask``: null tail per look, prints and looks corrections, duration-aware LLR, 10 s detection.
    ``fit`` makes a back end from training data (default: :func:`fit_backend` with ``config``; the fused
    back end passes its own), for the inner folds and for ``backend`` when None."""
    fit = fit or (lambda data: fit_backend(data, config))
    sc = _inner_scores(dev, mask, fit, inner_folds, progress)
    null = np.asarray(sc["null"])
    # Looks: per-identity max over a call's looks against the last look alone, in the tail.
    qs = np.quantile(null, [0.99, 0.995, 0.998])
    p_last = _exceed(np.asarray(sc["call_last"]), qs)
    p_max = _exceed(np.asarray(sc["call_max"]), qs)
    ratio_looks = float(np.median(p_max / np.maximum(p_last, 1e-9))) if p_last.min() > 0 else 1.0
    mean_ratio = float(np.mean(sc["call_ratio"]))
    gamma = max(0.0, (ratio_looks - 1.0) / max(math.log(mean_ratio), 1e-6))
    # Prints: an identity's best of 3 prints against one print.
    p_print = _exceed(np.asarray(sc["print_null"]), qs)
    p_id = _exceed(np.asarray(sc["id_max"]), qs)
    ratio_prints = float(np.median(p_id / np.maximum(p_print, 1e-9))) if p_print.min() > 0 else 1.0
    prints_exponent = float(np.clip(math.log(max(ratio_prints, 1.0)) / math.log(3.0), 0.0, 1.0))
    if backend is None:
        backend = fit(dev.training(mask))
    cohort_raw = _cohort_raw(dev, mask)
    cv = backend.project(cohort_raw)
    stats = np.asarray(backend.cohort_stats(cv))
    cal = fit_calibration(
        backend.id, null, np.asarray(sc["tar"]), np.asarray(sc["null_d"]), np.asarray(sc["tar_d"]),
        target_scores_10s=np.asarray(sc["target_call"]), looks_gamma=gamma,
        prints_exponent=prints_exponent, tar_model_dur=np.asarray(sc["tar_md"]),
        null_model_dur=np.asarray(sc["null_md"]), min_net_speech_s=LOOKS_S[0], long_min_s=LONG_MIN_S,
        target_scores_long=np.asarray(sc["target_call_long"]), null_groups=np.asarray(sc["null_fam"]),
        meta={"null_trials": len(null), "target_trials": len(sc["tar"]),
              "target_calls": len(sc["target_call"]), "looks_ratio_measured": round(ratio_looks, 3),
              "mean_last_over_first_look": round(mean_ratio, 3),
              "prints_ratio_measured": round(ratio_prints, 3),
              "families": sorted(set(dev.family[mask]))},
    )
    cal.cohort = cv.astype(np.float16).astype(np.float32)
    cal.meta["_cohort_stats"] = stats
    return cal, backend, sc


def load_devset(engine: Any, root: Any, *, cache_dir: Any = None, progress: bool = False,
                conditions: Sequence[str] = ("clean", "channel")) -> DevSet:
    """Both conditions of a voice-dev style corpus (``clean/`` and ``channel/`` trees, manifest.csv with
    a ``family`` column), embedded with channel copies (cached)."""
    from pathlib import Path

    from callvet.voice.evaluation import embed_set, scan_tree, speaker_groups

    root = Path(root)
    parts = []
    for cond in conditions:
        tree = root / cond
        if not tree.is_dir():
            continue
        s = embed_set(engine, scan_tree(tree), augment=True, cache_dir=cache_dir, progress=progress,
                      label=cond)
        parts.append((cond, s))
    if not parts:
        from callvet.core.errors import InvalidInput

        raise InvalidInput(f"{root} has no clean/ or channel/ tree", code="bad_corpus")
    speakers = sorted({u.speaker for _, s in parts for u in s.items})
    groups = speaker_groups(parts[0][1].items[0].path.parent.parent, speakers)
    return DevSet(
        emb=np.concatenate([s.emb for _, s in parts]), aug=np.concatenate([s.aug for _, s in parts]),
        partials=[p for _, s in parts for p in s.partials], net_s=np.concatenate([s.net_s for _, s in parts]),
        speaker=np.concatenate([s.speakers for _, s in parts]),
        family=np.array([groups[u.speaker] for _, s in parts for u in s.items]),
        cond=np.concatenate([[c] * len(s.items) for c, s in parts]),
        name=np.array([u.name for _, s in parts for u in s.items]),
    )

