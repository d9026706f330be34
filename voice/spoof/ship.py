"""Make, measure and write the shipped back end (``callvet spoof train``, ``callvet models build``).

One run does, on recordings made here from Debian packages (:mod:`~callvet.voice.spoof.heldout`):

1. the leave-one-family-out figures of the recipe, per fold and per group, and the same for the
   peer (LFCC statistics alone: what a cepstral baseline sees) in the same run;
2. an independent check: a second draw (another seed, files not used in 1.) scored by each fold's
   model, so the per-fold operating points are tested on recordings nobody looked at;
3. the served back end: :func:`~callvet.voice.spoof.train.fit_backend` on every fold, written as
   ``cm.npz`` + ``manifest.json`` (sha256, Debian package versions, the command, the figures).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from callvet.voice.spoof import heldout, train

__all__ = ["DEBIAN_PACKAGES", "rows_cached", "train_and_save"]

DEBIAN_PACKAGES = ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-es-wav",
                   "asterisk-core-sounds-fr-wav", "asterisk-core-sounds-it-wav",
                   "asterisk-core-sounds-ru-wav", "fillets-ng-data", "ktuberling-data",
                   "pocketsphinx-testdata", "espeak-ng", "flite", "festival", "festvox-kallpc16k",
                   "festvox-kdlpc16k", "festvox-us-slt-hts", "festvox-italp16k", "festvox-itapc16k",
                   "festvox-ca-ona-hts", "festvox-czech-dita", "festvox-suopuhe-lj")


def versions() -> dict[str, str]:
    out = {}
    for pkg in DEBIAN_PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True,
                           check=False)
        out[pkg] = r.stdout.strip() if r.returncode == 0 else "missing"
    return out


def rows_cached(per_group: int, seed: int, cache: Path | None, *, exclude: set[str] | None = None,
                progress: Callable[[str], None] | None = None) -> heldout.Rows:
    path = cache / f"rows-{per_group}-{seed}-{len(exclude or ())}.npz" if cache else None
    if path is not None and path.is_file():
        return heldout.load_rows(path)
    rows = heldout.make_rows(per_group, seed=seed, exclude=exclude, progress=progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        heldout.save_rows(rows, path)
    return rows


def _counts(rows: heldout.Rows) -> dict[str, int]:
    return {str(k): int(v) for k, v in zip(*np.unique(np.asarray(rows.group), return_counts=True),
                                          strict=True)}


def train_and_save(out_dir: Path, *, per_group: int = 30, seed: int = 0, check_seed: int = 7,
                   check_per_group: int = 15, ffr: float = 0.01, cache: Path | None = None,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Steps 1-3 above; returns the manifest written to ``out_dir/manifest.json``."""
    say = progress or (lambda _m: None)
    t0 = time.monotonic()
    rows = rows_cached(per_group, seed, cache, progress=say)
    say(f"{len(rows)} recordings ({time.monotonic() - t0:.0f} s)")
    heldout_fig = train.lofo(rows, ffr=ffr)
    peer = train.lofo(rows, ffr=ffr, cols=train.LFCC_ONLY)
    say(f"held out: {json.dumps(heldout_fig['pooled'])}")
    independent = None
    if check_per_group > 0:
        check = rows_cached(check_per_group, check_seed, cache, exclude=set(rows.ids), progress=say)
        independent = {**train.lofo(rows, ffr=ffr, test_rows=check), "recordings": _counts(check),
                       "seed": check_seed}
        say(f"independent draw: {json.dumps(independent['pooled'])}")
    meta = {"trained_on": sorted(set(rows.group)), "per_group": per_group, "seed": seed}
    cm, rep = train.fit_backend(rows, meta=meta)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "cm.tmp.npz"
    np.savez_compressed(tmp, **cm)
    tmp.replace(out_dir / "cm.npz")
    manifest = {
        "kind": "spoof_backend", "format_version": 2, "file": "cm.npz",
        "sha256": hashlib.sha256((out_dir / "cm.npz").read_bytes()).hexdigest(),
        "command": f"callvet spoof train --per-group {per_group} --seed {seed} --check-seed {check_seed} "
                   f"--check-per-group {check_per_group}",
        "recordings": _counts(rows), "folds": [f.__dict__ for f in heldout.FOLDS],
        "debian_packages": versions(), "training": rep, "heldout": heldout_fig,
        "peer_lfcc_stats_only": peer, "independent": independent,
        "seconds": round(time.monotonic() - t0, 1),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str) + "\n")
    return manifest
