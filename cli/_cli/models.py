"""``callvet models ...``: build the model artifacts, import SpeechBrain encoders, show what is built."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from callvet._cli.common import fail
from callvet.core.errors import CallvetError
from callvet.core.settings import get_settings

__all__ = ["register"]

models_app = typer.Typer(help="Model artifacts: speaker encoders and other parts' models.",
                         no_args_is_help=True)


def _models_dir(models_dir: Path | None) -> Path:
    return Path(models_dir) if models_dir is not None else get_settings().models_dir


@models_app.command("build")
def build_cmd(
    if_missing: bool = typer.Option(False, "--if-missing", help="build only what is not built yet"),
    force: bool = typer.Option(False, "--force", help="rebuild even what is built"),
    models_dir: Path | None = typer.Option(None, "--models-dir", help="default: Settings.models_dir"),
) -> None:
    """Build every model artifact (GE2E speaker encoder, sentence model, credit model)."""
    from callvet.models.build import Status, build_all

    target = _models_dir(models_dir)
    typer.echo(f"models dir: {target}")
    outcomes = build_all(target, force=force, if_missing=if_missing, progress=typer.echo)
    failed = [o.module for o in outcomes if o.status is Status.FAILED]
    if failed:
        typer.secho(f"{len(failed)} builder(s) failed: {', '.join(failed)}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1)


@models_app.command("import-speechbrain")
def import_speechbrain_cmd(
    source: Path = typer.Argument(..., help="directory with hyperparams.yaml and embedding_model.ckpt"),
    name: str = typer.Option("ecapa", "--name", help="encoder name (select with CALLVET_ENCODER=NAME)"),
    force: bool = typer.Option(False, "--force", help="replace an existing encoder of that name"),
    models_dir: Path | None = typer.Option(None, "--models-dir", help="default: Settings.models_dir"),
) -> None:
    """Export a SpeechBrain ECAPA-TDNN speaker model (spkrec-ecapa-voxceleb layout) to ONNX."""
    from callvet.models.ecapa import import_speechbrain

    try:
        out = import_speechbrain(source, _models_dir(models_dir), name=name, force=force)
    except CallvetError as exc:
        raise fail(exc) from exc
    manifest = json.loads((out / "manifest.json").read_text())
    typer.echo(f"{name}: exported to {out} (embedding size {manifest['embedding_size']})")


@models_app.command("list")
def list_cmd(
    models_dir: Path | None = typer.Option(None, "--models-dir", help="default: Settings.models_dir"),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="check every file's sha256"),
) -> None:
    """List the speaker encoders built under the models directory."""
    from callvet.voice.encoder import verify_artifact

    target = _models_dir(models_dir)
    found = False
    for manifest_path in sorted(target.glob("*/manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("kind") != "speaker_encoder":
            continue
        found = True
        state = "unchecked"
        if verify:
            try:
                verify_artifact(manifest_path.parent)
                state = "ok"
            except CallvetError as exc:
                state = f"BAD ({exc.code})"
        typer.echo(f"{manifest['name']}\tdim={manifest['embedding_size']}\t{manifest['source']['package']} "
                   f"{manifest['source']['version']}\tbuilt {manifest['built_at']}\t{state}")
    if not found:
        typer.echo(f"no speaker encoders under {target}; run `callvet models build`")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
