"""``callvet spoof ...``: build the countermeasure's development corpus, train its back end, evaluate."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path
from typing import Any

import typer
from callvet._cli.common import fail
from callvet.core.errors import CallvetError, InvalidInput
from callvet.core.settings import get_settings

__all__ = ["register"]

spoof_app = typer.Typer(help="Spoofing countermeasure (synthetic speech, replay): train and evaluate.",
                        no_args_is_help=True)

#: Cross-fitting folds over the training sources (see callvet.voice.spoof.train).
FOLDS = (["asterisk-en", "replay:asterisk-en", "espeak-ng"],
         ["asterisk-es", "fillets", "replay:asterisk-es", "replay:fillets", "flite"])


def _recordings(split: str, per_group: int, seed: int, clean: bool) -> list[tuple[Any, ...]]:
    from callvet.voice.audio import resample
    from callvet.voice.spoof import corpus

    out = []
    for it in corpus.items(split, per_group=per_group, seed=seed):
        source = it.group if it.kind != "replay" else "replay:" + it.id.split(":")[1]

        def make(it: corpus.Item = it) -> tuple[Any, Any]:
            x, sr = it.make()
            y = corpus.phone(x, sr, it.channel, seed=corpus.hash_seed(it.id))
            return y, (resample(x, sr, 16000) if clean else None)

        out.append((it.id, it.is_spoof, it.kind, it.group, source, make))
    return out


def _features(split: str, per_group: int, seed: int, clean: bool, cache: Path | None,
              aasist: Any) -> Any:
    from callvet.voice.spoof.train import featurize

    path = cache / f"{split}-{per_group}-{seed}-{int(clean)}.pkl" if cache else None
    if path is not None and path.is_file():
        with path.open("rb") as f:
            return pickle.load(f)  # our own cache file, written below
    recs = _recordings(split, per_group, seed, clean)
    typer.echo(f"{split}: {len(recs)} recordings")
    feats = featurize(recs, aasist.score, progress=typer.echo)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            pickle.dump(feats, f)
    return feats


def _versions() -> dict[str, str]:
    import subprocess

    out = {}
    for pkg in ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-es-wav", "asterisk-core-sounds-fr-wav",
                "asterisk-core-sounds-it-wav", "asterisk-core-sounds-ru-wav", "fillets-ng-data",
                "ktuberling-data", "pocketsphinx-testdata", "espeak-ng", "flite", "festival"):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
        out[pkg] = r.stdout.strip() if r.returncode == 0 else "missing"
    return out


def _group_report(det: Any, comps: Any, feats: Any, *, clean: bool) -> dict[str, Any]:
    import numpy as np
    from callvet.voice.spoof.train import eer, operating_rates

    fused = comps @ det.fusion_w + det.fusion_b
    y = np.asarray(feats.spoof)
    groups = np.asarray(feats.group)
    kinds = np.asarray(feats.kind)
    rep: dict[str, Any] = {
        "recordings": len(y), "eer": round(eer(fused[~y], fused[y]), 4),
        "eer_aasist_channel": round(eer(comps[~y, 0], comps[y, 0]), 4),
        "eer_aasist_channel_synthetic": round(eer(comps[~y, 0], comps[kinds == "synthetic", 0]), 4),
        "eer_replay_llr": round(eer(comps[~y, 1], comps[kinds == "replay", 1]), 4),
        "eer_synthetic_llr": round(eer(comps[~y, 2], comps[kinds == "synthetic", 2]), 4),
        "operating_point": operating_rates(det, comps, list(y), list(kinds)),
    }
    for kind in ("synthetic", "replay"):
        rep[f"eer_{kind}"] = round(eer(fused[~y], fused[kinds == kind]), 4)
    if clean and len(feats.aasist_clean) == len(y):
        ac = np.asarray(feats.aasist_clean)
        rep["eer_aasist_clean16k"] = round(eer(ac[~y], ac[y]), 4)
        rep["eer_aasist_clean16k_synthetic"] = round(eer(ac[~y], ac[kinds == "synthetic"]), 4)
    per: dict[str, Any] = {}
    flags = np.asarray([det.decide(c).flag for c in comps])
    for g in sorted(set(groups)):
        m = groups == g
        per[g] = {"n": int(m.sum()), "spoof": bool(y[m][0]),
                  ("false_flag_rate" if not y[m][0] else "miss_rate"):
                  round(float(flags[m].mean() if not y[m][0] else 1 - flags[m].mean()), 4)}
        if y[m][0]:
            per[g]["eer_vs_all_genuine"] = round(eer(fused[~y], fused[m]), 4)
        else:
            per[g]["eer_vs_all_spoof"] = round(eer(fused[m], fused[y]), 4)
    rep["groups"] = per
    return rep


@spoof_app.command("train")
def train_cmd(
    out: Path | None = typer.Option(None, "--out", help="default: the packaged voice/spoof/cm.npz"),
    per_group: int = typer.Option(40, "--per-group", help="bona fide files per training source"),
    test_per_group: int = typer.Option(30, "--test-per-group", help="0 = do not evaluate on the test split"),
    components: int = typer.Option(32, "--components", help="GMM components"),
    seed: int = typer.Option(0, "--seed"),
    cache: Path | None = typer.Option(None, "--cache", help="directory to cache features in"),
    report: Path | None = typer.Option(None, "--report", help="write the figures as JSON here"),
) -> None:
    """Train the LFCC-GMMs + fusion + calibration on the Debian-shipped corpus (phone channel), write
    the artifact and its manifest (``cm.json``), and report held-out figures per group."""
    import hashlib

    import numpy as np
    from callvet.voice.spoof import detector as detmod
    from callvet.voice.spoof.train import components as comps_of
    from callvet.voice.spoof.train import fit_cm, save_cm

    settings = get_settings()
    target = Path(out) if out is not None else detmod.CM_FILE
    try:
        aasist = detmod._Aasist(settings.models_dir / "aasist", threads=1)
        t0 = time.monotonic()
        train = _features("train", per_group, seed, False, cache, aasist)
        meta = {"trained_on": sorted(set(train.group)), "debian_packages": _versions(),
                "aasist_sha256": aasist.manifest.get("files", {}).get("model.onnx"),
                "per_group": per_group, "seed": seed, "folds": FOLDS,
                "channels": "train lines 0,1,3 of callvet.voice.augment.CHANNELS; test lines 2,4"}
        cm, rep = fit_cm(train, folds=FOLDS, n_components=components, seed=seed, meta=meta)
        save_cm(cm, target)
        typer.echo(f"wrote {target} ({target.stat().st_size} bytes) in {time.monotonic() - t0:.0f} s")
        typer.echo(json.dumps(rep["cross_fitted_eer"]))
        full: dict[str, Any] = {"training": rep, "meta": meta}
        if test_per_group > 0:
            test = _features("test", test_per_group, seed, True, cache, aasist)
            with np.load(target, allow_pickle=False) as z:
                det = detmod.SpoofDetector(aasist, {k: z[k] for k in z.files})
            gm = {k: det.gmms[k] for k in ("bona", "replay", "synth")}
            full["test"] = _group_report(det, comps_of(test, gm), test, clean=True)
            typer.echo(json.dumps(full["test"], indent=1))
        manifest = {**full, "file": target.name,
                    "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
                    "command": f"callvet spoof train --per-group {per_group} --test-per-group "
                               f"{test_per_group} --components {components} --seed {seed}"}
        target.with_suffix(".json").write_text(json.dumps(manifest, indent=1, default=str) + "\n")
        if report is not None:
            report.write_text(json.dumps(full, indent=1, default=str) + "\n")
    except CallvetError as exc:
        raise fail(exc) from exc


@spoof_app.command("make-corpus")
def make_corpus_cmd(
    out: Path = typer.Argument(..., help="writes OUT/bonafide/*.wav and OUT/spoof/{synthetic,replay}/*.wav"),
    split: str = typer.Option("test", "--split", help="train or test"),
    per_group: int = typer.Option(30, "--per-group"),
    seed: int = typer.Option(1, "--seed", help="a seed other than training's draws other files"),
) -> None:
    """Write a split of the development corpus through the phone line (8 kHz WAV), for ``spoof eval``."""
    import re

    import numpy as np
    import soundfile as sf

    try:
        recs = _recordings(split, per_group, seed, False)
        for rid, is_spoof, kind, group, _source, make in recs:
            y, _ = make()
            sub = out / ("spoof" if is_spoof else "bonafide") / (kind if is_spoof else "")
            sub.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{group}_{rid}")[-120:]
            sf.write(str(sub / f"{name}.wav"), np.clip(y, -1, 1), 8000, subtype="PCM_16")
        typer.echo(f"wrote {len(recs)} recordings under {out}")
    except CallvetError as exc:
        raise fail(exc) from exc


@spoof_app.command("eval")
def eval_cmd(
    directory: Path = typer.Argument(..., help="DIR/bonafide and DIR/spoof (subfolders name the kind: "
                                     "spoof/synthetic, spoof/replay)"),
    plot: Path | None = typer.Option(None, "--plot", help="DET plot PNG (default DIR/det.png)"),
    ffr: float | None = typer.Option(None, "--ffr", help="target false-flag rate (default "
                                     "CALLVET_SPOOF_FFR or 1 %)"),
    limit: int = typer.Option(5000, "--limit", help="at most this many files per folder"),
    as_json: bool = typer.Option(False, "--json", help="print the figures as JSON"),
) -> None:
    """EER, false-flag and miss rates at the operating point, and a DET plot."""
    import numpy as np
    from callvet.voice.audio import resample
    from callvet.voice.spoof import load_detector
    from callvet.voice.spoof.corpus import load_audio
    from callvet.voice.spoof.train import eer, operating_rates

    exts = {".wav", ".ogg", ".flac"}
    try:
        folders = {"bonafide": directory / "bonafide", "spoof": directory / "spoof"}
        for d in folders.values():
            if not d.is_dir():
                raise InvalidInput(f"{d} is not a directory (need DIR/bonafide and DIR/spoof)",
                                   code="bad_corpus")
        det = load_detector(get_settings().models_dir, ffr=ffr)
        rows: list[tuple[bool, str, Any]] = []
        skipped = 0
        for name, d in folders.items():
            files = sorted(p for p in d.rglob("*") if p.suffix.lower() in exts)[:limit]
            for p in files:
                kind = "bonafide" if name == "bonafide" else (
                    p.parent.name if p.parent != d and p.parent.name in ("synthetic", "replay")
                    else "spoof")
                try:
                    x, sr = load_audio(p)
                    rows.append((name == "spoof", kind, det.components(resample(x, sr, 16000))))
                except (CallvetError, RuntimeError, ValueError) as exc:
                    skipped += 1
                    typer.echo(f"skipped {p}: {exc}", err=True)
        if not any(r[0] for r in rows) or all(r[0] for r in rows):
            raise InvalidInput("need scorable files in both bonafide and spoof", code="bad_corpus")
        comps = np.asarray([r[2] for r in rows])
        y = np.asarray([r[0] for r in rows])
        fused = comps @ det.fusion_w + det.fusion_b
        figures = {"eer": round(eer(fused[~y], fused[y]), 4), "bonafide": int((~y).sum()),
                   "spoof": int(y.sum()), "skipped": skipped,
                   **operating_rates(det, comps, list(y), [r[1] for r in rows])}
        kinds = {r[1] for r in rows if r[0]}
        if "spoof" in kinds:
            m = np.asarray([r[1] == "spoof" for r in rows])
            figures["miss_spoof"] = round(float(np.mean([not det.decide(c).flag for c in comps[m]])), 4)
        target = plot if plot is not None else directory / "det.png"
        _det_plot(fused[~y], fused[y], det.threshold, target)
        figures["plot"] = str(target)
        if as_json:
            typer.echo(json.dumps(figures, indent=1))
        else:
            typer.echo(f"EER {100 * figures['eer']:.2f} % ({figures['bonafide']} bona fide, "
                       f"{figures['spoof']} spoof)")
            typer.echo(f"operating point (target false-flag rate {100 * det.ffr:g} %): threshold "
                       f"{det.threshold:.3f}, false flags on genuine "
                       f"{100 * figures['false_flag_rate']:.2f} %")
            for k in ("synthetic", "replay", "spoof"):
                if f"miss_{k}" in figures:
                    typer.echo(f"  miss rate {k}: {100 * figures[f'miss_{k}']:.2f} %")
            typer.echo(f"DET plot: {target}")
    except CallvetError as exc:
        raise fail(exc) from exc


def _det_plot(bona: Any, spoof: Any, threshold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from callvet.voice.spoof.train import det_curve
    from scipy.stats import norm

    ffr, miss, thr = det_curve(bona, spoof)
    clip = lambda v: np.clip(v, 1e-4, 1 - 1e-4)  # noqa: E731
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(norm.ppf(clip(ffr)), norm.ppf(clip(miss)), lw=1.5, label="fused countermeasure")
    i = int(np.searchsorted(thr, threshold, side="right")) - 1
    ax.plot(norm.ppf(clip(ffr[i])), norm.ppf(clip(miss[i])), "o", color="red", label="operating point")
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99, 0.999])
    ax.set_xticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_yticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_xlabel("false-flag rate on genuine (%)")
    ax.set_ylabel("miss rate on spoofs (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    ax.set_title("DET: callvet spoof countermeasure")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path), dpi=100, bbox_inches="tight")
    plt.close(fig)


def register(app: typer.Typer) -> None:
    app.add_typer(spoof_app, name="spoof")
