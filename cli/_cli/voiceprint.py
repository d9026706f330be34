"""``callvet voiceprint ...``: train the channel-robust back end, evaluate, inspect audio."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from callvet._cli.common import fail, services
from callvet.core.errors import CallvetError
from callvet.core.settings import get_settings

__all__ = ["register"]

voiceprint_app = typer.Typer(help="Voiceprints: back-end training, evaluation, audio analysis.",
                             no_args_is_help=True)


def _trees(corpus: list[Path]) -> list[Path]:
    """Expand a corpus root with manifest.csv (voice-dev layout) into its condition trees."""
    import csv

    out: list[Path] = []
    for root in corpus:
        manifest = root / "manifest.csv"
        if manifest.is_file():
            with manifest.open(newline="") as f:
                header = next(csv.reader(f), [])
            conds = [c for c in header if (root / c).is_dir()]
            out += [root / c for c in conds] if conds else [root]
        else:
            out.append(root)
    return out


@voiceprint_app.command("train-backend")
def train_backend_cmd(
    corpus: list[Path] = typer.Argument(..., help="<speaker>/<file>.wav trees, or a corpus root with "
                                        "manifest.csv; the same speaker name in two trees is one speaker"),
    out: Path | None = typer.Option(None, "--out", help="default: <models_dir>/backend/<encoder>"),
    target_far: float = typer.Option(0.01, "--target-far", help="false-alarm rate per comparison the "
                                     "threshold is calibrated for"),
    folds: int = typer.Option(4, "--folds", help="speaker-disjoint folds for threshold calibration"),
    cache: Path | None = typer.Option(None, "--cache", help="directory to cache embeddings in"),
    plda_dim: int = typer.Option(200, "--plda-dim", help="PLDA subspace size; 0 = cosine + AS-norm"),
) -> None:
    """Train and store the back end (NAP + WCCN, then PLDA or AS-norm; calibrated threshold)."""
    import numpy as np
    from callvet.voice.backend import BackendConfig, TrainingSet, backend_dir_for
    from callvet.voice.engine import VoiceEngine
    from callvet.voice.evaluation import embed_set, scan_tree, speaker_groups
    from callvet.voice.fusion import train_for_encoder

    settings = get_settings()
    try:
        engine = VoiceEngine.from_settings(settings, backend_dir=False)
        trees = _trees(corpus)
        sets = [embed_set(engine, scan_tree(t), augment=True, cache_dir=cache, progress=True, label=t.name)
                for t in trees]
    except CallvetError as exc:
        raise fail(exc) from exc
    data = TrainingSet(np.concatenate([s.emb for s in sets]), np.concatenate([s.speakers for s in sets]),
                       np.concatenate([s.aug for s in sets]))
    n_spk = len(set(data.speaker))
    if n_spk < 2 * folds:
        raise fail(CallvetError(f"{n_spk} speakers is too few for {folds}-fold calibration",
                                code="bad_corpus"))
    strata = speaker_groups(trees[0], sorted(set(data.speaker)))
    config = BackendConfig(target_far=target_far, plda_dim=plda_dim)
    backend = train_for_encoder(engine.encoder, data, config, folds=folds, strata=strata, progress=typer.echo)
    backend.meta["trained_on"] = [str(t) for t in trees]
    target = out or backend_dir_for(settings.models_dir, engine.encoder_name)
    backend.save(target)
    typer.echo(f"back end {backend.id}: {n_spk} speakers, {len(data.emb)} embeddings "
               f"(+{data.aug.shape[1]} channel copies each), threshold {backend.threshold:.3f} "
               f"for {target_far:.1%} false alarms -> {target}")


@voiceprint_app.command("calibrate")
def calibrate_cmd(
    corpus: Path = typer.Argument(..., help="corpus root with clean/ and channel/ trees and manifest.csv "
                                  "(a family column: inner folds leave whole families out)"),
    out: Path | None = typer.Option(None, "--out", help="default: the back end's own directory"),
    cache: Path | None = typer.Option(None, "--cache", help="directory to cache embeddings in"),
    folds: int = typer.Option(3, "--folds", help="inner leave-families-out folds"),
    conditions: str = typer.Option("clean,channel", "--conditions", help="corpus trees to use"),
) -> None:
    """Fit the open-set calibration (s-norm cohort, null tail, looks/prints corrections, LLR) for the
    installed back end; writes calibration.json + cohort.npz beside backend.npz."""
    import numpy as np
    from callvet.voice.backend import RECOMMENDED_CONFIG, backend_dir_for
    from callvet.voice.engine import VoiceEngine
    from callvet.voice.fusion import backend_fitter
    from callvet.voice.openset import fit_openset, load_devset

    settings = get_settings()
    try:
        engine = VoiceEngine.from_settings(settings)
        if engine.backend is None:
            raise CallvetError("no trained back end for this encoder; run train-backend first",
                               code="backend_missing")
        dev = load_devset(VoiceEngine.from_settings(settings, backend_dir=False), corpus, cache_dir=cache,
                          progress=True, conditions=conditions.split(","))
    except CallvetError as exc:
        raise fail(exc) from exc
    fit = backend_fitter(engine.encoder, RECOMMENDED_CONFIG)
    cal, _, _ = fit_openset(dev, np.ones(len(dev.emb), bool), backend=engine.backend, inner_folds=folds,
                            progress=typer.echo, fit=fit)
    cal.meta["built_from"] = str(corpus)
    cal.meta["speakers"] = len(set(dev.speaker))
    target = out or backend_dir_for(settings.models_dir, engine.encoder_name)
    path = cal.save(target)
    typer.echo(f"calibration for {cal.backend_id}: {cal.meta['null_trials']} null trials, cohort "
               f"{0 if cal.cohort is None else len(cal.cohort)} prints, looks gamma {cal.looks_gamma:.3f}, "
               "prints exponent "
               f"{cal.prints_exponent:.3f} -> {path}")


@voiceprint_app.command("eval")
def eval_cmd(
    directory: Path = typer.Argument(..., help="<speaker>/<file>.wav tree to enrol from (and test on)"),
    test_dir: Path | None = typer.Option(None, "--test-dir", help="test files from this tree (same names)"),
    enroll: int = typer.Option(3, "--enroll", help="files enrolled per known speaker (first, sorted)"),
    unknown_fraction: float = typer.Option(0.2, "--unknown-fraction", help="speakers never enrolled"),
    seed: int = typer.Option(0, "--seed"),
    json_out: Path | None = typer.Option(None, "--json", help="write the full report here"),
    plot: Path | None = typer.Option(None, "--plot", help="write a DET plot (PNG) here"),
    backend: str | None = typer.Option(None, "--backend", help="'none' for raw cosine, or a back-end "
                                       "directory; default: the trained one when present"),
    accumulate: float | None = typer.Option(None, "--accumulate", help="join test files into ~S s probes"),
    cache: Path | None = typer.Option(None, "--cache", help="directory to cache embeddings in"),
) -> None:
    """EER, minDCF, closed-set top-1 and open-set false alarms, overall and per speaker group."""
    from callvet.voice.engine import VoiceEngine
    from callvet.voice.evaluation import evaluate

    settings = get_settings()
    try:
        if backend == "none":
            engine = VoiceEngine.from_settings(settings, backend_dir=False)
        else:
            engine = VoiceEngine.from_settings(settings, backend_dir=Path(backend) if backend else None)
            if backend and engine.backend is None:
                raise CallvetError(f"no usable back end at {backend} for this encoder",
                                   code="backend_missing")
        report = evaluate(engine, directory, test_dir=test_dir, n_enrol=enroll,
                          unknown_fraction=unknown_fraction, seed=seed, use_backend=backend != "none",
                          accumulate_s=accumulate, cache_dir=cache, plot=plot, progress=True)
    except CallvetError as exc:
        raise fail(exc) from exc
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    typer.echo(f"{report['backend_id']}: {report['n_speakers']} speakers, {report['n_models']} enrolled")
    typer.echo(f"EER {report['eer']:.2%}  minDCF {report['min_dcf']:.3f}  top-1 {report['top1']:.1%}  "
               f"FA@95%det {report['fa_at_95_detection']:.1%}")
    for g, b in report["by_group"].items():
        typer.echo(f"  {g:12s} EER {b['eer']:.2%}  top-1 {b['top1']:.1%}  FA@95%det "
                   f"{b['fa_at_95_detection']:.1%}  ({b['n_probes']} probes)")


@voiceprint_app.command("analyse")
def analyse_cmd(
    path: Path = typer.Argument(..., exists=True, dir_okay=False),
    encoding: str = typer.Option("auto", "--encoding", help="auto | wav | pcm16 | mulaw"),
    sample_rate: int | None = typer.Option(None, "--sample-rate", help="for raw pcm16 / mulaw"),
) -> None:
    """Decode a file and report duration, net speech, segments and pauses (VAD)."""
    from callvet.voice.engine import VoiceEngine

    try:
        engine = VoiceEngine.from_settings(get_settings(), backend_dir=False)
        audio = engine.decode(path.read_bytes(), encoding=encoding, sample_rate=sample_rate)  # type: ignore[arg-type]
        report = engine.analyse(audio).to_dict()
    except CallvetError as exc:
        raise fail(exc) from exc
    report["enough_for_voiceprint"] = report["net_speech_s"] >= engine.min_net_speech_s
    typer.echo(json.dumps(report, indent=2))


@voiceprint_app.command("info")
def info_cmd() -> None:
    """The engine in use: encoder, back end, dimension, threshold."""
    try:
        engine = services().voice
    except CallvetError as exc:
        raise fail(exc) from exc
    typer.echo(json.dumps(engine.describe(), indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(voiceprint_app, name="voiceprint")
