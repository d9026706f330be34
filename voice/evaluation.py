"""Speaker-recognition evaluation on a ``<speaker>/<file>.wav`` tree: EER, minDCF, top-1, open-set FA.

Protocol (the corpus README's, so figures are comparable): a fraction of speakers is never enrolled
(chosen by seed); each other speaker is enrolled from its first N files (sorted by name) and tested on
the rest, optionally taken from a second tree with the same names in another condition (enrol clean,
test phone). Every probe is scored against every enrolled model:

- EER and minDCF (p_target 0.01, C_miss = C_fa = 1, normalised) over target / non-target trials;
- closed-set top-1 over probes of enrolled speakers;
- open-set false alarms at 95 % detection: the threshold where 95 % of target trials pass, and the
  share of never-enrolled speakers' probes whose best score passes it (the blacklist's real question);
- the same per speaker group (corpus manifest ``family`` when a manifest.csv is found, else the
  speaker-name prefix before ``_``).

Embedding is separated from scoring (:class:`EmbeddedSet`), so one set of embeddings serves every back
end in a comparison and cross-validation.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from callvet.core.errors import InvalidInput, Unavailable
from callvet.voice.audio import AudioError
from callvet.voice.augment import CHANNELS, channel_copies

if TYPE_CHECKING:
    from callvet.voice.backend import Backend, TrainingSet
    from callvet.voice.engine import VoiceEngine

__all__ = [
    "EmbeddedSet",
    "Scorer",
    "Trials",
    "Utterance",
    "compute_metrics",
    "det_points",
    "eer",
    "embed_set",
    "evaluate",
    "min_dcf",
    "plot_det",
    "pool_trials",
    "run_protocol",
    "scan_tree",
    "speaker_groups",
    "target_nontarget",
    "training_set",
]

AUDIO_EXT = (".wav",)


@dataclass(frozen=True)
class Utterance:
    speaker: str
    name: str
    path: Path


def scan_tree(root: Path) -> list[Utterance]:
    """All ``<speaker>/<file>.wav`` under ``root``, sorted by speaker then name."""
    root = Path(root)
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a directory", code="bad_corpus")
    items = [
        Utterance(d.name, f.name, f)
        for d in sorted(p for p in root.iterdir() if p.is_dir())
        for f in sorted(d.iterdir())
        if f.is_file() and f.suffix.lower() in AUDIO_EXT
    ]
    if not items:
        raise InvalidInput(f"no <speaker>/<file>.wav files under {root}", code="bad_corpus")
    return items


def speaker_groups(root: Path, speakers: Sequence[str]) -> dict[str, str]:
    """Speaker -> group: the ``family`` column of a manifest.csv in ``root`` or its parent, else the
    name prefix."""
    groups: dict[str, str] = {}
    for cand in (Path(root) / "manifest.csv", Path(root).parent / "manifest.csv"):
        if cand.is_file():
            with cand.open(newline="") as f:
                for row in csv.DictReader(f):
                    if row.get("speaker") and row.get("family"):
                        groups.setdefault(row["speaker"], row["family"])
            break
    return {s: groups.get(s) or s.split("_")[0] for s in speakers}


@dataclass
class EmbeddedSet:
    """Raw encoder embeddings of a list of utterances.

    ``emb`` (n, d) utterance embeddings, ``aug`` (n, k, d) embeddings of k simulated-channel copies
    (k == 0 when not computed), ``partials`` per-window embeddings (for accumulating speech),
    ``net_s`` net speech seconds.
    """

    items: list[Utterance]
    emb: np.ndarray
    aug: np.ndarray
    partials: list[np.ndarray]
    net_s: np.ndarray
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def speakers(self) -> np.ndarray:
        return np.array([u.speaker for u in self.items])

    def index(self) -> dict[tuple[str, str], int]:
        return {(u.speaker, u.name): i for i, u in enumerate(self.items)}

    def subset(self, speakers: set[str]) -> EmbeddedSet:
        """The utterances of ``speakers`` only (a fold's training or test side)."""
        idx = [i for i, u in enumerate(self.items) if u.speaker in speakers]
        return EmbeddedSet([self.items[i] for i in idx], self.emb[idx], self.aug[idx],
                           [self.partials[i] for i in idx], self.net_s[idx])


def training_set(sets: Sequence[EmbeddedSet], speakers: set[str]) -> TrainingSet:
    """What a back end is fitted on: ``speakers``' utterances of every set (conditions), with their
    channel copies, so the held-out side of a fold never leaks into training."""
    from callvet.voice.backend import TrainingSet

    subs = [s.subset(speakers) for s in sets]
    return TrainingSet(np.concatenate([s.emb for s in subs]), np.concatenate([s.speakers for s in subs]),
                       np.concatenate([s.aug for s in subs]))


def _cache_key(engine: VoiceEngine, paths: Sequence[Path], augment: bool) -> str:
    h = hashlib.sha256()
    h.update(str(engine.encoder.manifest.get("sha256", engine.encoder_name)).encode())
    h.update(b"aug" if augment else b"noaug")
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _load_cached(cache: Path, items: list[Utterance]) -> EmbeddedSet:
    """An :class:`EmbeddedSet` saved by :func:`_save_cached` for these ``items``."""
    with np.load(cache) as z:
        counts = z["pcount"]
        splits = np.split(z["partials"], np.cumsum(counts)[:-1])
        kept_idx = z["kept"] if "kept" in z else np.arange(len(items))
        kept_set = set(kept_idx.tolist())
        skipped = [{"file": str(u.path), "code": "skipped"} for i, u in enumerate(items) if i not in kept_set]
        return EmbeddedSet([items[i] for i in kept_idx], z["emb"], z["aug"], list(splits), z["net"], skipped)


def _save_cached(cache: Path, out: EmbeddedSet, kept: list[int]) -> None:
    """Write ``out`` whole, then rename: a crash never leaves a torn cache file behind."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    parts = out.partials
    np.savez(tmp, emb=out.emb, aug=out.aug, net=out.net_s, pcount=np.array([len(p) for p in parts]),
             partials=np.concatenate(parts), kept=np.array(kept, dtype=np.int64))
    tmp.replace(cache)


def embed_set(
    engine: VoiceEngine,
    items: Sequence[Utterance],
    *,
    augment: bool = False,
    cache_dir: Path | None = None,
    progress: bool = False,
    label: str = "embedding",
) -> EmbeddedSet:
    """Decode, VAD and embed every utterance (and its channel copies when ``augment``).

    Utterances shorter than the engine's minimum are still embedded: evaluation enrols several short
    files into one model, as an analyst would. Results are cached in ``cache_dir`` keyed by encoder
    build and file stats. Files that fail to decode (silent, clipped, not audio ...) are left out and
    listed in ``skipped`` with their error code, so one bad file does not void a corpus run.
    """
    items = list(items)
    if hasattr(engine.encoder, "parts"):
        return _embed_fused(engine, items, augment=augment, cache_dir=cache_dir, progress=progress,
                            label=label)
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"emb-{_cache_key(engine, [u.path for u in items], augment)}.npz"
        if cache.is_file():
            return _load_cached(cache, items)
    embs, augs, parts, nets = [], [], [], []
    kept: list[int] = []
    skipped: list[dict[str, str]] = []
    k = len(CHANNELS) if augment else 0

    def work(advance: Callable[[], None]) -> None:
        for i, u in enumerate(items):
            try:
                audio = engine.decode(u.path.read_bytes())
            except AudioError as exc:
                skipped.append({"file": str(u.path), "code": exc.code})
                advance()
                continue
            kept.append(i)
            an = engine.analyse(audio)
            x = an.speech if an.net_speech_s >= 0.5 else audio.to(engine.sample_rate).samples
            p = engine.encoder.embed_partials(x)
            m = p.mean(axis=0)
            embs.append(m / max(float(np.linalg.norm(m)), 1e-12))
            parts.append(p)
            nets.append(an.net_speech_s)
            if k:
                copies = channel_copies(x, 16000, seed=len(x))
                augs.append(np.stack([engine.encoder.embed(y) for y in copies]))
            advance()

    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task(label, total=len(items))
            work(lambda: bar.advance(task))
    else:
        work(lambda: None)
    dim = engine.encoder.dim
    if not kept:
        raise InvalidInput("no file could be decoded", code="bad_corpus", skipped=skipped[:20])
    out = EmbeddedSet(
        [items[i] for i in kept],
        np.stack(embs).astype(np.float32),
        np.stack(augs).astype(np.float32) if k else np.zeros((len(kept), 0, dim), np.float32),
        parts,
        np.array(nets, dtype=np.float32),
        skipped,
    )
    if cache is not None:
        _save_cached(cache, out, kept)
    return out


def _embed_fused(engine: VoiceEngine, items: list[Utterance], **kw: Any) -> EmbeddedSet:
    """A fused encoder's set from each part's own (cached) set: the rows the fused encoder gives, without
    embedding the corpus again for every combination of encoders."""
    from callvet.voice.engine import VoiceEngine
    from callvet.voice.fusion import fuse_embeddings, fuse_partials

    label = kw.pop("label")
    sets = [embed_set(VoiceEngine(p, vad=engine.vad), items, label=f"{label} ({p.name})", **kw)
            for p in engine.encoder.parts]
    first = sets[0]
    if any([u.path for u in s.items] != [u.path for u in first.items] for s in sets[1:]):
        raise InvalidInput("the encoders kept different files", code="bad_corpus")
    return EmbeddedSet(first.items, fuse_embeddings([s.emb for s in sets]),
                       fuse_embeddings([s.aug for s in sets]),
                       [fuse_partials(list(p)) for p in zip(*[s.partials for s in sets], strict=True)],
                       first.net_s, first.skipped)


@dataclass
class Scorer:
    """Turns raw embeddings into prints and calibrated scores, with or without a back end.

    ``enrol_augment`` adds the channel copies of enrolment utterances to the model (when present).
    """

    backend: Backend | None = None
    enrol_augment: bool = False

    def _project(self, raw: np.ndarray) -> np.ndarray:
        raw = np.atleast_2d(raw)
        if self.backend is None:
            return raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
        return self.backend.project(raw)

    def model(self, raw: np.ndarray, aug: np.ndarray | None = None) -> np.ndarray:
        raw = np.atleast_2d(raw)
        if self.enrol_augment and aug is not None and aug.size:
            raw = np.concatenate([raw, aug.reshape(-1, raw.shape[-1])])
        if self.backend is not None:
            return self.backend.project_mean(raw)
        m = self._project(raw).mean(axis=0)
        return m / max(float(np.linalg.norm(m)), 1e-12)

    def probes(self, raw: np.ndarray) -> np.ndarray:
        return self._project(raw)

    def scores(self, probes: np.ndarray, models: np.ndarray) -> np.ndarray:
        raw = probes @ models.T
        if self.backend is None:
            return raw
        ps = self.backend.cohort_stats(probes)
        ms = self.backend.cohort_stats(models)
        return np.stack([self.backend.calibrate(raw[i], ps[i], ms) for i in range(len(probes))])


@dataclass
class Trials:
    """A probe x model score matrix with labels; ``probe_known`` marks probes of enrolled speakers."""

    scores: np.ndarray
    probe_speaker: np.ndarray
    model_speaker: np.ndarray
    probe_known: np.ndarray
    probe_net_s: np.ndarray
    groups: dict[str, str] = field(default_factory=dict)


def _chunks(idx: list[int], net: np.ndarray, target_s: float) -> list[list[int]]:
    out: list[list[int]] = []
    cur: list[int] = []
    acc = 0.0
    for i in idx:
        cur.append(i)
        acc += float(net[i])
        if acc >= target_s:
            out.append(cur)
            cur, acc = [], 0.0
    if cur:
        if out and acc < target_s / 2:
            out[-1] += cur
        else:
            out.append(cur)
    return out


def run_protocol(
    enrol: EmbeddedSet,
    test: EmbeddedSet,
    scorer: Scorer,
    *,
    n_enrol: int = 3,
    unknown_fraction: float = 0.2,
    seed: int = 0,
    accumulate_s: float | None = None,
    groups: dict[str, str] | None = None,
) -> Trials:
    """Enrol the first ``n_enrol`` files of each known speaker from ``enrol``; probe with the other
    file names from ``test`` (which may be ``enrol`` itself); ``accumulate_s`` joins a speaker's
    probes into ~that much net speech (window embeddings averaged, as a live call does)."""
    speakers = sorted(set(enrol.speakers))
    rng = np.random.default_rng(seed)
    n_unknown = round(unknown_fraction * len(speakers))
    unknown = set(rng.choice(speakers, n_unknown, replace=False)) if n_unknown else set()
    known = [s for s in speakers if s not in unknown]
    test_index = test.index()
    models, model_spk = [], []
    probe_rows: list[list[int]] = []
    probe_spk: list[str] = []
    for s in speakers:
        names = sorted(u.name for u in enrol.items if u.speaker == s)
        if s in known:
            if len(names) <= n_enrol:
                continue
            idx = [i for i, u in enumerate(enrol.items) if u.speaker == s and u.name in names[:n_enrol]]
            models.append(scorer.model(enrol.emb[idx], enrol.aug[idx] if enrol.aug.shape[1] else None))
            model_spk.append(s)
            test_names = names[n_enrol:]
        else:
            test_names = names
        rows = [test_index[(s, n)] for n in test_names if (s, n) in test_index]
        if not rows:
            continue
        groups_of_rows = _chunks(rows, test.net_s, accumulate_s) if accumulate_s else [[r] for r in rows]
        probe_rows += groups_of_rows
        probe_spk += [s] * len(groups_of_rows)
    raw = []
    for rows in probe_rows:
        if len(rows) == 1:
            raw.append(test.emb[rows[0]])
        else:
            m = np.concatenate([test.partials[r] for r in rows]).mean(axis=0)
            raw.append(m / max(float(np.linalg.norm(m)), 1e-12))
    probes = scorer.probes(np.stack(raw))
    scores = scorer.scores(probes, np.stack(models))
    known_set = set(model_spk)
    return Trials(
        scores=scores,
        probe_speaker=np.array(probe_spk),
        model_speaker=np.array(model_spk),
        probe_known=np.array([s in known_set for s in probe_spk]),
        probe_net_s=np.array([float(test.net_s[r].sum()) for r in probe_rows]),
        groups=dict(groups or {}),
    )


def det_points(tar: np.ndarray, non: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, P_miss, P_fa) at every distinct score, ascending thresholds.

    From :func:`sklearn.metrics.roc_curve` without dropping points, so tied scores form one operating
    point (a threshold cannot split them) instead of the order-dependent staircase of a sort."""
    from sklearn.metrics import roc_curve

    scores = np.concatenate([np.asarray(tar, np.float64), np.asarray(non, np.float64)])
    labels = np.concatenate([np.ones(len(tar)), np.zeros(len(non))])
    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate=False)
    thr = np.where(np.isfinite(thr), thr, np.nextafter(scores.max(), np.inf))
    return thr[::-1].copy(), (1.0 - tpr)[::-1].copy(), fpr[::-1].copy()


def eer(tar: np.ndarray, non: np.ndarray) -> float:
    """Equal error rate: where P_miss = P_fa on the DET curve, linearly interpolated between the two
    operating points that straddle it (all scores tied gives 0.5, not 0 or 1)."""
    if len(tar) == 0 or len(non) == 0:
        return float("nan")
    _, pm, pf = det_points(tar, non)
    d = pm - pf
    exact = np.flatnonzero(d == 0)
    if len(exact):
        return float(pm[exact[0]])
    i = int(np.flatnonzero(np.diff(np.sign(d)) != 0)[0])
    t = d[i] / (d[i] - d[i + 1])
    return float(pm[i] + t * (pm[i + 1] - pm[i]))


def min_dcf(tar: np.ndarray, non: np.ndarray, p_target: float = 0.01) -> float:
    if len(tar) == 0 or len(non) == 0:
        return float("nan")
    _, pm, pf = det_points(tar, non)
    dcf = p_target * pm + (1 - p_target) * pf
    return float(dcf.min() / min(p_target, 1 - p_target))


def pool_trials(parts: Sequence[Trials]) -> Trials:
    """Trials of disjoint speaker sets (cross-validation folds) as one block-diagonal matrix; the
    cross-fold cells are NaN and count as no trial."""
    n = sum(len(t.probe_speaker) for t in parts)
    m = sum(len(t.model_speaker) for t in parts)
    scores = np.full((n, m), np.nan)
    i = j = 0
    for t in parts:
        scores[i:i + t.scores.shape[0], j:j + t.scores.shape[1]] = t.scores
        i += t.scores.shape[0]
        j += t.scores.shape[1]
    groups: dict[str, str] = {}
    for t in parts:
        groups.update(t.groups)
    return Trials(
        scores=scores,
        probe_speaker=np.concatenate([t.probe_speaker for t in parts]),
        model_speaker=np.concatenate([t.model_speaker for t in parts]),
        probe_known=np.concatenate([t.probe_known for t in parts]),
        probe_net_s=np.concatenate([t.probe_net_s for t in parts]),
        groups=groups,
    )


def _block(tr: Trials, probe_mask: np.ndarray) -> dict[str, Any]:
    s = tr.scores[probe_mask]
    valid = ~np.isnan(s)
    ps = tr.probe_speaker[probe_mask]
    pk = tr.probe_known[probe_mask]
    is_tar = ps[:, None] == tr.model_speaker[None, :]
    tar, non = s[is_tar & valid], s[~is_tar & valid]
    filled = np.where(valid, s, -np.inf)
    known_rows = np.flatnonzero(pk)
    top1 = (
        float(np.mean(tr.model_speaker[np.argmax(filled[known_rows], axis=1)] == ps[known_rows]))
        if len(known_rows) else float("nan")
    )
    all_tar, _ = target_nontarget(tr)
    thr95 = float(np.quantile(all_tar, 0.05)) if len(all_tar) else float("nan")
    unk = filled[~pk]
    fa = float(np.mean(unk.max(axis=1) >= thr95)) if len(unk) else float("nan")
    return {
        "eer": eer(tar, non),
        "min_dcf": min_dcf(tar, non),
        "top1": top1,
        "fa_at_95_detection": fa,
        "n_probes": len(s),
        "n_target_trials": len(tar),
        "n_nontarget_trials": len(non),
        "n_unknown_probes": len(unk),
    }


def compute_metrics(tr: Trials, threshold: float | None = None) -> dict[str, Any]:
    """Overall and per-group metrics; with ``threshold`` also the operating point actually reached."""
    out = _block(tr, np.ones(len(tr.probe_speaker), dtype=bool))
    out["n_models"] = len(tr.model_speaker)
    if threshold is not None:
        tar, non = target_nontarget(tr)
        out["threshold"] = float(threshold)
        out["miss_at_threshold"] = float(np.mean(tar < threshold))
        out["fa_per_trial_at_threshold"] = float(np.mean(non >= threshold))
        unk = np.where(np.isnan(tr.scores), -np.inf, tr.scores)[~tr.probe_known]
        out["open_set_fa_at_threshold"] = float(np.mean(unk.max(axis=1) >= threshold)) if len(unk) else None
    by_group: dict[str, Any] = {}
    pg = np.array([tr.groups.get(s, s.split("_")[0]) for s in tr.probe_speaker])
    for g in sorted(set(pg)):
        by_group[g] = _block(tr, pg == g)
    out["by_group"] = by_group
    return out


def plot_det(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """DET plot (normal-deviate axes) of named (target, non-target) score sets."""
    try:
        import matplotlib
    except ImportError as exc:
        raise Unavailable("DET plots need matplotlib (install the build extra: pip install 'callvet[build]')",
                          code="matplotlib_missing") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    fig, ax = plt.subplots(figsize=(5, 5))
    ticks = np.array([0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4])
    for name, (tar, non) in curves.items():
        _, pm, pf = det_points(tar, non)
        eps = 1e-4
        ax.plot(norm.ppf(np.clip(pf, eps, 1 - eps)), norm.ppf(np.clip(pm, eps, 1 - eps)),
                label=f"{name} (EER {eer(tar, non):.1%})")
    ax.set_xticks(norm.ppf(ticks), [f"{t:.1%}" for t in ticks])
    ax.set_yticks(norm.ppf(ticks), [f"{t:.1%}" for t in ticks])
    ax.set_xlim(norm.ppf(0.0005), norm.ppf(0.6))
    ax.set_ylim(norm.ppf(0.0005), norm.ppf(0.6))
    ax.set_xlabel("false alarm probability")
    ax.set_ylabel("miss probability")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def target_nontarget(tr: Trials) -> tuple[np.ndarray, np.ndarray]:
    is_tar = tr.probe_speaker[:, None] == tr.model_speaker[None, :]
    valid = ~np.isnan(tr.scores)
    return tr.scores[is_tar & valid], tr.scores[~is_tar & valid]


def evaluate(
    engine: VoiceEngine,
    enrol_dir: Path,
    *,
    test_dir: Path | None = None,
    n_enrol: int = 3,
    unknown_fraction: float = 0.2,
    seed: int = 0,
    use_backend: bool = True,
    accumulate_s: float | None = None,
    cache_dir: Path | None = None,
    plot: Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The ``callvet voiceprint eval`` command: embed, run the protocol, return a JSON-able report."""
    backend = engine.backend if use_backend else None
    augment = bool(backend is not None and backend.enrol_augment)
    enrol_items = scan_tree(enrol_dir)
    enrol = embed_set(engine, enrol_items, augment=augment, cache_dir=cache_dir, progress=progress,
                      label="enrolment tree")
    test = enrol
    if test_dir is not None:
        test = embed_set(engine, scan_tree(test_dir), cache_dir=cache_dir, progress=progress,
                         label="test tree")
    groups = speaker_groups(Path(enrol_dir), sorted(set(enrol.speakers)))
    scorer = Scorer(backend, enrol_augment=augment)
    trials = run_protocol(enrol, test, scorer, n_enrol=n_enrol, unknown_fraction=unknown_fraction, seed=seed,
                          accumulate_s=accumulate_s, groups=groups)
    from callvet.voice.engine import COSINE_THRESHOLD

    threshold = backend.threshold if backend is not None else COSINE_THRESHOLD
    report: dict[str, Any] = {
        "enrol_dir": str(enrol_dir),
        "test_dir": str(test_dir) if test_dir else None,
        "n_enrol": n_enrol,
        "unknown_fraction": unknown_fraction,
        "seed": seed,
        "accumulate_s": accumulate_s,
        "encoder": engine.encoder_name,
        "backend_id": engine.backend_id if backend is not None else f"{engine.encoder_name}:cosine",
        "n_speakers": len(set(enrol.speakers)),
        "n_files": len(enrol.items),
        "skipped_files": enrol.skipped + (test.skipped if test is not enrol else []),
        **compute_metrics(trials, threshold),
    }
    if plot is not None:
        report["det_plot"] = str(plot_det({report["backend_id"]: target_nontarget(trials)}, plot))
    return report
