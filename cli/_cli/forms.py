"""``callvet forms batch|test-template|extract``: the scanned-forms robot from the shell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from callvet._cli.common import fail, services
from callvet.core.errors import CallvetError

__all__ = ["register"]

forms_app = typer.Typer(help="Application forms from scanned images (OCR).", no_args_is_help=True)
_TEMPLATES = typer.Option(
    [], "--templates", help="extra template directory (YAML); may repeat", exists=True, file_okay=False
)


def _reader(templates: list[Path], threads: int) -> Any:
    from callvet.forms.service import FormReader

    return FormReader(template_dirs=tuple(templates), threads=threads)


@forms_app.command("batch")
def batch(
    src: Path = typer.Argument(..., exists=True, file_okay=False, help="folder of scans (PNG/JPEG/TIFF/PDF)"),
    out: Path = typer.Option(..., "--out", help="output folder (pages/, forms/, summary.csv)"),
    submit: bool = typer.Option(
        False, "--submit", help="send each complete application to the decision engine"
    ),
    key: str | None = typer.Option(
        None, "--key", envvar="CALLVET_KEY", help="API key for --submit (role checked)"
    ),
    templates: list[Path] = _TEMPLATES,
    threads: int = typer.Option(1, "--threads", min=1, max=16, help="OCR threads"),
) -> None:
    """Read a folder of mixed scans; resumes after an interruption without redoing finished files."""
    from callvet.forms.batch import run_batch, scan_files

    submitter = None
    if submit:
        from callvet._cli.decision import _principal
        from callvet.core.auth import Role
        if not key:
            raise typer.BadParameter("--submit needs --key (or CALLVET_KEY)")
        svc = services()
        try:
            p = _principal(svc.db, key, Role.ROBOT, Role.ANALYST, Role.APPROVER)
        except CallvetError as exc:
            raise fail(exc) from None
        engine = svc.decision

        def submitter(app: dict[str, Any]) -> dict[str, Any]:
            return engine.decide(app, None, actor=p.actor).to_dict()

    try:
        reader = _reader(templates, threads)
        files = scan_files(src)
        with typer.progressbar(length=len(files), label="forms", show_pos=True) as bar:
            report = run_batch(src, out, reader, submit=submitter, progress=lambda _p, _s: bar.update(1))
    except CallvetError as exc:
        raise fail(exc) from None
    typer.echo(
        f"{report.pages} pages ({report.read} read, {report.skipped} already done): {report.forms} forms, "
        f"{report.needs_review} need review, {report.rejected} rejected, {report.failed} failed, "
        f"{report.submitted} submitted; summary at {out / 'summary.csv'}"
    )


@forms_app.command("test-template")
def test_template(
    template: str = typer.Argument(..., help="template name (built-in or from --templates)"),
    images: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="sample scans"),
    templates: list[Path] = _TEMPLATES,
    as_json: bool = typer.Option(False, "--json", help="print the full results as JSON"),
) -> None:
    """Try a template on sample images: every field, its reading, confidence and why it needs review."""
    from callvet.forms.extract import NotAForm

    try:
        reader = _reader(templates, 1)
        tpl = reader.templates.get(template)
    except CallvetError as exc:
        raise fail(exc) from None
    results = []
    for path in images:
        try:
            res = reader.read_bytes(path.read_bytes(), template=tpl.name)
        except NotAForm as exc:
            results.append({"file": str(path), "rejected": exc.code, "message": exc.message})
            if not as_json:
                typer.echo(f"{path}: REJECTED [{exc.code}] {exc.message}")
            continue
        except CallvetError as exc:
            raise fail(exc) from None
        results.append({"file": str(path), **res.to_dict()})
        if as_json:
            continue
        typer.echo(
            f"{path}: template {tpl.name} (rotation {res.rotation}, skew {res.skew}); "
            f"{len(res.needs_review)} field(s) for review"
        )
        for f in res.fields:
            flag = "REVIEW" if f.path in res.needs_review else "ok"
            typer.echo(
                f"  {flag:6} {f.path:28} {json.dumps(f.value, ensure_ascii=False):32} "
                f"{f.confidence:.2f}  {f.note}"
            )
    if as_json:
        typer.echo(json.dumps(results, ensure_ascii=False, indent=1))


@forms_app.command("extract")
def extract(
    image: Path = typer.Argument(..., exists=True, dir_okay=False),
    templates: list[Path] = _TEMPLATES,
) -> None:
    """Read one scan and print the API's answer as JSON."""
    try:
        res = _reader(templates, 1).read_bytes(image.read_bytes())
    except CallvetError as exc:
        raise fail(exc) from None
    typer.echo(json.dumps(res.to_dict(), ensure_ascii=False, indent=1))


def register(app: typer.Typer) -> None:
    app.add_typer(forms_app, name="forms")
