"""``callvet spoof ...``: build the countermeasure's development corpus, train its back end, evaluate."""

from __future__ import annotations

import json
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


@spoof_app.command("train")
def train_cmd(
    out: Path | None = typer.Option(None, "--out", help="default: MODELS_DIR/backend/spoof"),
    per_group: int = typer.Option(30, "--per-group", help="bona fide files per source (and as many "
                                  "synthetic utterances per family, half as many replays per source)"),
    seed: int = typer.Option(0, "--seed"),
    check_seed: int = typer.Option(7, "--check-seed", help="seed of the independent draw"),
    check_per_group: int = typer.Option(15, "--check-per-group", help="0 = no independent draw"),
    cache: Path | None = typer.Option(None, "--cache", help="directory to cache cue vectors in"),
    report: Path | None = typer.Option(None, "--report", help="write the manifest here too"),
) -> None:
    """Leave-one-synthesiser-family-out figures (per fold, per group, with the LFCC-statistics peer),
    an independent check on another draw, then the served back end and its manifest."""
    from callvet.voice.spoof.detector import backend_dir
    from callvet.voice.spoof.ship import train_and_save

    target = Path(out) if out is not None else backend_dir(get_settings().models_dir)
    try:
        t0 = time.monotonic()
        manifest = train_and_save(target, per_group=per_group, seed=seed, check_seed=check_seed,
                                  check_per_group=check_per_group, cache=cache, progress=typer.echo)
        typer.echo(f"wrote {target}/cm.npz in {time.monotonic() - t0:.0f} s")
        typer.echo(json.dumps({k: manifest[k] for k in ("heldout", "independent")}, indent=1))
        if report is not None:
            report.write_text(json.dumps(manifest, indent=1, default=str) + "\n")
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
    from callvet.voice.spoof.cues import cues
    from callvet.voice.spoof.heldout import serving_window
    from callvet.voice.spoof.train import eer, operating_rates
    from callvet.voice.vad import default_vad

    exts = {".wav", ".ogg", ".flac"}
    try:
        folders = {"bonafide": directory / "bonafide", "spoof": directory / "spoof"}
        for d in folders.values():
            if not d.is_dir():
                raise InvalidInput(f"{d} is not a directory (need DIR/bonafide and DIR/spoof)",
                                   code="bad_corpus")
        det = load_detector(get_settings().models_dir, ffr=ffr)
        vad = default_vad()
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
                    # What serving scores: VAD net speech, its latest 4.04 s (as identify does).
                    window = serving_window(resample(x, sr, 8000), vad)
                    if len(window) < 4000:
                        raise InvalidInput("under 0.5 s of net speech", code="too_little_speech")
                    rows.append((name == "spoof", kind, det.decide(cues(window))))
                except (CallvetError, RuntimeError, ValueError) as exc:
                    skipped += 1
                    typer.echo(f"skipped {p}: {exc}", err=True)
        if not any(r[0] for r in rows) or all(r[0] for r in rows):
            raise InvalidInput("need scorable files in both bonafide and spoof", code="bad_corpus")
        res = [r[2] for r in rows]
        y = np.asarray([r[0] for r in rows])
        fused = np.asarray([r.score for r in res])
        figures = {"eer": round(eer(fused[~y], fused[y]), 4), "bonafide": int((~y).sum()),
                   "spoof": int(y.sum()), "skipped": skipped,
                   **operating_rates(res, list(y), [r[1] for r in rows], threshold=det.threshold,
                                     ffr=det.ffr)}
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
