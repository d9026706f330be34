"""The countermeasure's data and its leave-one-family-out protocol (``callvet spoof train``).

One split is one number and invites tuning on it; here every synthesiser family is held out in turn,
together with bona fide speakers and phone lines it shares nothing with:

=====  ==================  =======================================  =========
fold   synthesiser family  bona fide speakers (and their replays)   lines
=====  ==================  =======================================  =========
0      espeak-ng           Asterisk en_US + es_MX (both Allison)    0
1      flite (awb, rms)    Fish Fillets cast, pocketsphinx-testdata 1
2      Festival diphone    Asterisk fr_CA (June), it_IT (Carlo)     2, 4
3      Festival HTS        Asterisk ru_RU, KTuberling               3
=====  ==================  =======================================  =========

Each recording is made once (synthesised, or read from a Debian package, or replayed through
:func:`~callvet.voice.spoof.replay.simulate_replay`), put through *every* simulated line, cut to what
serving sees (Silero VAD net speech, the latest 4.04 s) and reduced to its :func:`~.cues.cues` vector.
A fold's test rows are its own recordings on its own lines; its training rows are the other folds'
recordings on the other lines (so a line is never in both). flite's kal and slt are left out (the
same speakers as Festival's kal_diphone and slt HTS).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from callvet.core.errors import InvalidInput
from callvet.voice.spoof import corpus
from callvet.voice.spoof.cues import N_CUES, cues

__all__ = ["FOLDS", "LINES", "Fold", "Rows", "make_rows", "serving_window"]

LINES = 5
WINDOW_8K = 32300  # the detector's 64 600-sample window at 16 kHz
#: Bona fide recordings join files of one source until they last this long (s).
MIN_TAKE_S = 3.0


@dataclass(frozen=True)
class Fold:
    family: str
    synth: tuple[tuple[str, str], ...]  # (engine:voice, language)
    bona: tuple[str, ...]
    lines: tuple[int, ...]


_ESPEAK = tuple((f"espeak:{v}", "en") for v in
                ["en-us", "en", "en-us+m3", "en-us+f2", "en+m5", "en+f4", "en-us+klatt", "en+klatt2",
                 "es", "fr", "de", "it", "es+m2", "fr+f3"])
FOLDS: tuple[Fold, ...] = (
    Fold("espeak-ng", _ESPEAK, ("asterisk-en", "asterisk-es"), (0,)),
    Fold("flite", (("flite:awb", "en"), ("flite:rms", "en")), ("fillets", "pocketsphinx"), (1,)),
    Fold("festival-diphone", (("festival:kal_diphone", "en"), ("festival:ked_diphone", "en"),
                              ("festival:lp_diphone", "it"), ("festival:pc_diphone", "it"),
                              ("festival:czech_dita", "cs"), ("festival:suo_fi_lj_diphone", "fi")),
         ("asterisk-fr", "asterisk-it"), (2, 4)),
    Fold("festival-hts", (("festival:cmu_us_slt_arctic_hts", "en"), ("festival:upc_ca_ona_hts", "ca")),
         ("asterisk-ru", "ktuberling"), (3,)),
)


@dataclass
class Rows:
    """Per recording: cue vectors on every line (``x``: n x LINES x N_CUES), labels and groups."""

    ids: list[str] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)  # bonafide | synthetic | replay
    group: list[str] = field(default_factory=list)  # bona fide source / synth family / replay:<fold>
    fold: list[int] = field(default_factory=list)
    x: np.ndarray = field(default_factory=lambda: np.zeros((0, LINES, N_CUES)))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def spoof(self) -> np.ndarray:
        return np.asarray(self.kind) != "bonafide"


def _synth(spec: str, text: str) -> Callable[[], tuple[np.ndarray, int]]:
    engine, voice = spec.split(":", 1)
    makers = {"espeak": corpus._espeak, "flite": corpus._flite, "festival": corpus._festival}
    return makers[engine](voice, text)


def _texts(lang: str, fold: int) -> list[str]:
    if fold in (0, 1):
        return corpus.TRAIN_TEXT
    return corpus.TEST_TEXT[lang]


def _duration(path: Any) -> float:
    if str(path).endswith(".raw"):
        return float(path.stat().st_size) / 2 / 16000
    import soundfile as sf

    return float(sf.info(str(path)).duration)


def _concat(paths: list[Any]) -> Callable[[], tuple[np.ndarray, int]]:
    """Several files of one speaker joined with 0.3 s gaps: a caller's few answers, not one prompt
    (many Debian prompts are under a second, too short for a score on their own)."""
    def make() -> tuple[np.ndarray, int]:
        from callvet.voice.audio import resample

        parts, sr0 = [], 0
        for p in paths:
            x, sr = corpus.load_audio(p)
            sr0 = sr0 or sr
            parts += [resample(x, sr, sr0) if sr != sr0 else x, np.zeros(int(0.3 * sr0), np.float32)]
        return np.concatenate(parts).astype(np.float32), sr0

    return make


def _speaker_takes(files: list[Any], n: int, rng: random.Random, min_s: float) -> list[list[Any]]:
    """Up to ``n`` disjoint groups of files, each at least ``min_s`` long (at most 6 files)."""
    pool = list(files)
    rng.shuffle(pool)
    takes: list[list[Any]] = []
    cur: list[Any] = []
    dur = 0.0
    for p in pool:
        if len(takes) >= n:
            break
        cur.append(p)
        dur += _duration(p)
        if dur >= min_s or len(cur) >= 6:
            takes.append(cur)
            cur, dur = [], 0.0
    return takes


def _plan(per_group: int, seed: int, exclude: set[str]) -> list[tuple[str, str, str, int, Any]]:
    """(id, kind, group, fold, make) for every recording; ``exclude``: ids (files) not to draw again."""
    rng = random.Random(f"heldout:{seed}")
    sources = corpus._bona_sources()
    plan: list[tuple[str, str, str, int, Any]] = []
    used = {part for rid in exclude for part in rid.split("|")[1:]}
    for k, fold in enumerate(FOLDS):
        for g in fold.bona:
            files = [p for p in sources[g][1] if str(p) not in used]
            takes = _speaker_takes(files, per_group + per_group // 2, rng, MIN_TAKE_S)
            for t in takes[:per_group]:
                plan.append(("|".join([f"bona:{g}", *map(str, t)]), "bonafide", g, k, _concat(t)))
            for t in takes[per_group:]:
                rid = "|".join([f"replay:{g}", *map(str, t)])
                plan.append((rid, "replay", f"replay:{fold.family}", k,
                             _replayed(_concat(t), corpus.hash_seed(f"{seed}:{rid}"))))
        for i in range(2 * per_group):
            spec, lang = fold.synth[i % len(fold.synth)]
            text = rng.choice(_texts(lang, k))
            plan.append((f"synth:{spec}:{seed}:{i}", "synthetic", fold.family, k, _synth(spec, text)))
    return plan


def _replayed(make: Callable[[], tuple[np.ndarray, int]],
              seed: int) -> Callable[[], tuple[np.ndarray, int]]:
    def run() -> tuple[np.ndarray, int]:
        from callvet.voice.spoof.replay import simulate_replay

        x, sr = make()
        return simulate_replay(x, sr, seed=seed), sr

    return run


def serving_window(x8k: np.ndarray, vad: Any) -> np.ndarray:
    """What the detector scores of a recording: Silero net speech (8 kHz), its latest 4.04 s."""
    segs = vad.segments(x8k, 8000)
    pieces = [x8k[int(s * 8000):int(e * 8000)] for s, e in segs]
    speech = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return speech[-WINDOW_8K:]


def make_rows(per_group: int = 30, *, seed: int = 0, exclude: set[str] | None = None, threads: int = 2,
              progress: Callable[[str], None] | None = None) -> Rows:
    """Make every fold's recordings, through every line, as cue vectors (recordings with under 0.5 s
    of net speech on some line are dropped)."""
    from callvet.voice.vad import default_vad

    if per_group < 2:
        raise InvalidInput("per_group must be at least 2", code="bad_setting")
    local = threading.local()
    plan = _plan(per_group, seed, exclude or set())

    def one(entry: tuple[str, str, str, int, Any]) -> np.ndarray | None:
        rid, _kind, _group, _fold, make = entry
        if not hasattr(local, "vad"):
            local.vad = default_vad()  # one ONNX VAD state per thread
        vad = local.vad
        x, sr = make()
        out = []
        for line in range(LINES):
            y = serving_window(corpus.phone(x, sr, line, seed=corpus.hash_seed(f"{rid}:{line}")), vad)
            if len(y) < 4000:
                return None
            out.append(cues(y))
        return np.stack(out)

    rows = Rows()
    xs: list[np.ndarray] = []
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for n, (entry, res) in enumerate(zip(plan, pool.map(one, plan), strict=True)):
            if progress is not None and (n + 1) % 50 == 0:
                progress(f"  {n + 1}/{len(plan)} recordings")
            if res is None:
                continue
            rows.ids.append(entry[0])
            rows.kind.append(entry[1])
            rows.group.append(entry[2])
            rows.fold.append(entry[3])
            xs.append(res)
    rows.x = np.stack(xs) if xs else np.zeros((0, LINES, N_CUES))
    return rows


def save_rows(rows: Rows, path: Any) -> None:
    np.savez_compressed(path, x=rows.x, ids=np.asarray(rows.ids), kind=np.asarray(rows.kind),
                        group=np.asarray(rows.group), fold=np.asarray(rows.fold))


def load_rows(path: Any) -> Rows:
    with np.load(path, allow_pickle=False) as z:
        return Rows([str(v) for v in z["ids"]], [str(v) for v in z["kind"]],
                    [str(v) for v in z["group"]], [int(v) for v in z["fold"]], z["x"])
