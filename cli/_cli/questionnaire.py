"""``callvet interview ...``: run, answer, inspect and simulate questionnaire interviews from a terminal.

An adapter over :class:`callvet.questionnaire.service.InterviewService`, like the API.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from callvet._cli.common import fail, services
from callvet.core.errors import CallvetError, InvalidInput

__all__ = ["register"]

interview_app = typer.Typer(
    help="Adaptive investigation questionnaire: start, answer, talk, show, simulate, bank.",
    no_args_is_help=True,
)


def _service() -> Any:
    return services().interviews


def _echo(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise fail(InvalidInput(f"cannot read application JSON {path}: {exc}", field="application")) from None
    return data  # type: ignore[no-any-return]


@interview_app.command("start")
def start(
    application: Path = typer.Argument(..., help="application JSON (docs/contracts)"),
    language: str | None = typer.Option(None, help="zh-CN, en, en-US or en-GB"),
) -> None:
    """Start an interview; prints its id and the first question."""
    try:
        _echo(_service().create(_load(application), language=language, actor="cli"))
    except CallvetError as exc:
        raise fail(exc) from None


@interview_app.command("answer")
def answer(
    interview_id: str,
    question_id: str,
    transcript: str,
    delay: float | None = typer.Option(None, help="seconds from question end to speech start"),
) -> None:
    """Answer the pending question; prints the assessment and the next question or the result."""
    timing = {"delay_s": delay} if delay is not None else None
    try:
        _echo(_service().answer(interview_id, question_id, transcript, timing=timing, actor="cli"))
    except CallvetError as exc:
        raise fail(exc) from None


@interview_app.command("talk")
def talk(
    application: Path = typer.Argument(..., help="application JSON (docs/contracts)"),
    language: str | None = typer.Option(None, help="zh-CN, en, en-US or en-GB"),
) -> None:
    """Run a whole interview on the terminal: questions printed, answers typed."""
    import time

    svc = _service()
    try:
        out = svc.create(_load(application), language=language, actor="cli")
        while out.get("state") == "asking":
            q = out["question"]
            typer.secho(q["text"], fg=typer.colors.CYAN)
            t0 = time.monotonic()
            text = typer.prompt(">", default="", show_default=False)
            out = svc.answer(
                out["interview_id"],
                q["question_id"],
                text,
                timing={"delay_s": round(time.monotonic() - t0, 3)},
                actor="cli",
            )
            a = out["assessment"]
            typer.echo(f"  [{a['outcome']}/{a['validity']}] flags={a['flags']} risk={a['running_risk']}")
    except CallvetError as exc:
        raise fail(exc) from None
    _echo(out.get("result"))


@interview_app.command("show")
def show(interview_id: str) -> None:
    """An interview with its questions, answers and result."""
    try:
        _echo(_service().get(interview_id))
    except CallvetError as exc:
        raise fail(exc) from None


@interview_app.command("delete")
def delete(interview_id: str, reason: str = typer.Option(..., help="why (audited)")) -> None:
    """Erase an interview and its answers."""
    try:
        _service().delete(interview_id, reason=reason, actor="cli")
    except CallvetError as exc:
        raise fail(exc) from None
    typer.echo(f"deleted {interview_id}")


@interview_app.command("simulate")
def simulate(
    kind: str = typer.Option("genuine", help="genuine, fraudster, informed or guesser"),
    seed: int = typer.Option(10_000, help="first population seed"),
    n: int = typer.Option(20, help="number of applicants"),
    store: bool = typer.Option(False, help="run through the database (else in memory)"),
    verbose: bool = typer.Option(False, help="print every question and answer"),
) -> None:
    """Simulated applicants answer the real engine; prints the verdict counts."""
    from callvet.sim import questionnaire as sim

    kinds = {
        "genuine": sim.GenuineApplicant,
        "fraudster": sim.PartialIdentityFraudster,
        "informed": sim.InformedFraudster,
        "guesser": sim.Guesser,
    }
    if kind not in kinds:
        raise fail(InvalidInput(f"kind must be one of {', '.join(kinds)}", field="kind"))
    svc = _service()
    driver: Any = svc if store else sim.EngineDriver(svc.scorer)
    counts: Counter[str] = Counter()
    for s in range(seed, seed + n):
        caller = kinds[kind](sim.make_application(s), random.Random(s))
        try:
            out = sim.run_interview(driver, caller, actor="cli-simulator")
        except CallvetError as exc:
            counts[f"error:{exc.code}"] += 1
            continue
        res = out["result"]
        counts[res["verdict"]] += 1
        if verbose:
            typer.echo(
                f"{caller.app.application_id}: {res['verdict']} risk={res['risk_score']} "
                f"reasons={res['reasons']}"
            )
    typer.echo(json.dumps({"kind": kind, "n": n, "encoder": svc.encoder_loaded, **counts}))


@interview_app.command("bank")
def bank(language: str = typer.Option("en", help="en or zh")) -> None:
    """List the question bank: id, topic, answer type, difficulty and one phrasing."""
    from callvet.questionnaire.bank import load_bank

    lang = "zh" if language.startswith("zh") else "en"
    for q in load_bank().questions.values():
        typer.echo(
            f"{q.id}\t{q.topic}\t{q.answer_type}\td{q.difficulty}\t"
            f"{'owner-only' if q.owner_only else '-'}\t{q.text[lang][0]}"
        )  # type: ignore[index]


def register(app: typer.Typer) -> None:
    app.add_typer(interview_app, name="interview")
