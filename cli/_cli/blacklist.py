"""``callvet blacklist add|add-sample|list|show|remove`` and ``callvet identify`` from a terminal.

``add`` checks every file (decodes it and measures net speech) before it creates anything, so a bad file
in a batch exits 2 with nothing enrolled, rather than leaving a half-built identity behind.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from callvet._cli.common import fail, services
from callvet.core.errors import CallvetError, InvalidInput
from callvet.core.settings import redact_url

if TYPE_CHECKING:
    from callvet.voice.blacklist import Blacklist

__all__ = ["register"]

blacklist = typer.Typer(help="Fraudster voice blacklist: enrol, list, show and remove identities.",
                        no_args_is_help=True)

ENCODING_HELP = "auto (WAV) | wav | pcm16 | mulaw; raw pcm16/mulaw need --sample-rate"


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _service() -> Blacklist:
    return services().blacklist


def _decode_kw(encoding: str, sample_rate: int | None) -> dict[str, Any]:
    kw: dict[str, Any] = {"encoding": encoding}
    if sample_rate is not None:
        kw["sample_rate"] = sample_rate
    return kw


def _progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=True)


def _check_files(bl: Blacklist, files: list[Path], kw: dict[str, Any]) -> list[bytes]:
    """Every file decoded and its net speech measured before anything is written; a bad one exits 2
    with nothing enrolled (a half-enrolled batch is worse than none: the operator cannot tell)."""
    from callvet.voice.audio import AudioError

    blobs: list[bytes] = []
    errors: list[tuple[Path, CallvetError]] = []
    with _progress() as progress:
        task = progress.add_task("checking audio", total=len(files))
        for path in files:
            data = path.read_bytes()
            try:
                analysis = bl.engine.analyse(bl.engine.decode(data, **kw))
                if analysis.net_speech_s + 1e-6 < bl.engine.min_net_speech_s:
                    raise AudioError(f"only {analysis.net_speech_s:.1f} s of speech; at least "
                                     f"{bl.engine.min_net_speech_s:.1f} s needed", code="too_little_speech")
            except CallvetError as exc:
                errors.append((path, exc))
            blobs.append(data)
            progress.advance(task)
    if errors:
        for path, exc in errors:
            typer.secho(f"error [{exc.code}]: {path}: {exc.message}", err=True, fg=typer.colors.RED)
        typer.secho("nothing was added", err=True)
        raise typer.Exit(code=2)
    return blobs


def _enrol(bl: Blacklist, identity_id: int, files: list[Path], blobs: list[bytes],
           kw: dict[str, Any], actor: str) -> None:
    """Add the checked recordings to ``identity_id`` and print each print and any duplicate warning."""
    with _progress() as progress:
        task = progress.add_task("enrolling", total=len(files))
        results = []
        for path, data in zip(files, blobs, strict=True):
            results.append((path, bl.add_sample(identity_id, data, actor, **kw)))
            progress.advance(task)
    for path, res in results:
        typer.echo(f"sample {res['sample_id']}\t{res['net_speech_s']:.1f} s speech\t{path}")
        for dup in res["possible_duplicate_of"]:
            typer.secho(f"warning: {path} also matches identity {dup['identity_id']} ({dup['label']}) "
                        f"score {dup['score']:.3f}", fg=typer.colors.YELLOW)


FILES_ARG = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                           help="recordings of this voice (at least 3 s of speech each)")


@blacklist.command("add")
def add(
    label: str = typer.Argument(..., help="name analysts use for this fraudster"),
    files: list[Path] = FILES_ARG,
    notes: str = typer.Option("", "--notes", help="free text kept with the identity"),
    encoding: str = typer.Option("auto", "--encoding", help=ENCODING_HELP),
    sample_rate: int | None = typer.Option(None, "--sample-rate", help="rate of raw PCM / mu-law files"),
) -> None:
    """Create an identity from one or more recordings (all files are checked before anything is added)."""
    try:
        bl = _service()
    except CallvetError as exc:
        raise fail(exc) from None
    kw = _decode_kw(encoding, sample_rate)
    blobs = _check_files(bl, files, kw)
    actor = _actor()
    try:
        ident = bl.create_identity(label, notes, actor)
        typer.echo(f"identity {ident['id']}\t{ident['label']}")
        _enrol(bl, ident["id"], files, blobs, kw, actor)
    except CallvetError as exc:
        raise fail(exc) from None
    finally:
        bl.close()


@blacklist.command("add-sample")
def add_sample(
    identity_id: int = typer.Argument(..., help="an existing identity (see `callvet blacklist list`)"),
    files: list[Path] = FILES_ARG,
    encoding: str = typer.Option("auto", "--encoding", help=ENCODING_HELP),
    sample_rate: int | None = typer.Option(None, "--sample-rate", help="rate of raw PCM / mu-law files"),
) -> None:
    """Add recordings to an existing identity (the identity is checked first, then every file)."""
    try:
        bl = _service()
        ident = bl.get_identity(identity_id)
    except CallvetError as exc:
        raise fail(exc) from None
    kw = _decode_kw(encoding, sample_rate)
    blobs = _check_files(bl, files, kw)
    try:
        typer.echo(f"identity {ident['id']}\t{ident['label']}")
        _enrol(bl, identity_id, files, blobs, kw, _actor())
    except CallvetError as exc:
        raise fail(exc) from None
    finally:
        bl.close()


@blacklist.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """List identities with their number of samples."""
    try:
        bl = _service()
    except CallvetError as exc:
        raise fail(exc) from None
    rows = bl.list_identities()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(f"{r['id']}\t{r['label']}\t{r['samples']} samples\t{r['net_speech_s']:.1f} s\t"
                   f"{r['created_by']}\t{r['created_at']}")


@blacklist.command("show")
def show(identity_id: int) -> None:
    """One identity and its prints (never the vectors), as JSON."""
    try:
        typer.echo(json.dumps(_service().get_identity(identity_id), indent=2))
    except CallvetError as exc:
        raise fail(exc) from None


@blacklist.command("status")
def status() -> None:
    """The search index: back end, kind, size, measured recall, prints of other back ends."""
    try:
        typer.echo(json.dumps(_service().status(), indent=2))
    except CallvetError as exc:
        raise fail(exc) from None


@blacklist.command("remove")
def remove(
    identity_id: int,
    reason: str = typer.Option(..., "--reason", help="why (kept in the audit log)"),
) -> None:
    """Delete an identity and all its prints from the database and the search index."""
    try:
        bl = _service()
        out = bl.delete_identity(identity_id, _actor(), reason)
        bl.close()
    except CallvetError as exc:
        raise fail(exc) from None
    typer.echo(f"removed identity {out['id']} ({out['label']}), {out['samples_removed']} prints")


def _refuse_empty(bl: Blacklist) -> None:
    """An empty blacklist cannot say "no match": it would clear every fraudster (issue 11, a command run
    against a fresh data directory). Refused, naming the store, so the operator finds the right one."""
    _, prints = bl.counts()
    from callvet.voice.reenrol import reenrolment_report

    stale = reenrolment_report(bl.db, bl.engine.backend_id)
    if prints == 0 and stale["required"]:
        raise InvalidInput(
            f"the blacklist in {redact_url(bl.db.url)} holds {stale['unsearchable_prints']} prints of other "
            f"back ends ({', '.join(stale['unsearchable_prints_by_backend'])}) and none of "
            f"{bl.engine.backend_id}: {stale['identities_not_searchable']} identities must be re-enrolled "
            "from their original recordings (`callvet blacklist add-sample ID FILE`; a print cannot be "
            "converted and audio is never kept). `callvet blacklist status` lists them",
            code="reenrolment_required", identity_ids=stale["identity_ids_not_searchable"][:20])
    if prints == 0:
        raise InvalidInput(
            f"the blacklist in {redact_url(bl.db.url)} has no searchable prints for back end "
            f"{bl.engine.backend_id}: nothing to identify against, so \"no match\" would mean nothing. "
            f"Check CALLVET_DATA_DIR or the configuration file (docs/operations.md, Data directory), "
            f"or enrol with `callvet blacklist add`", code="empty_blacklist")


def identify(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    encoding: str = typer.Option("auto", "--encoding", help=ENCODING_HELP),
    sample_rate: int | None = typer.Option(None, "--sample-rate"),
    top_k: int = typer.Option(5, "--top-k", min=1, max=50),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Search a recording against the blacklist; prints ALARM when the best match passes the threshold."""
    try:
        bl = _service()
        _refuse_empty(bl)
        engine = bl.engine
        analysis = engine.analyse(engine.decode(file.read_bytes(), **_decode_kw(encoding, sample_rate)))
        result = bl.identify_voiceprint(engine.voiceprint(analysis.speech), top_k=top_k)
    except CallvetError as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    verdict = "ALARM" if result.alarm else "no match"
    typer.echo(f"{verdict}\tthreshold {result.threshold:.3f}\t{result.net_speech_s:.1f} s speech\t"
               f"{result.searched} prints searched")
    for m in result.matches:
        typer.echo(f"{m.identity_id}\t{m.label}\t{m.score:.4f}")


def register(app: typer.Typer) -> None:
    app.add_typer(blacklist, name="blacklist")
    app.command("identify")(identify)
