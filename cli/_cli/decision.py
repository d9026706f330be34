"""``callvet decision ...`` (train, decide, show, simulate) and ``callvet rules ...`` (policy versions).

Policy changes on the command line authenticate with an API key (``--key`` or ``CALLVET_KEY``) so the
maker-checker rule binds to a real identity and role, exactly as through the API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from callvet._cli.common import fail, open_db, services
from callvet.core.auth import Principal, Role, authenticate
from callvet.core.db import Database
from callvet.core.errors import CallvetError, Forbidden, InvalidInput
from callvet.core.settings import get_settings

__all__ = ["register"]

decision_app = typer.Typer(help="Credit decisions: train the model, decide applications, simulate.",
                           no_args_is_help=True)
rules_app = typer.Typer(help="Rule policies (GoRules JDM graphs): versions, propose, activate, tune.",
                        no_args_is_help=True)

_KEY = typer.Option(..., "--key", envvar="CALLVET_KEY", help="your API key (role checked)")


def _principal(db: Database, key: str, *roles: Role) -> Principal:
    p = authenticate(db, key)
    if p is None:
        raise Forbidden("invalid or revoked API key", code="unauthenticated")
    if not p.has(*roles):
        raise Forbidden(f"role {p.role.value} may not do this; needs {', '.join(r.value for r in roles)}")
    return p


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"cannot read JSON from {path}: {exc}", code="invalid_file") from None


def _echo(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=1, ensure_ascii=False, default=str))


@decision_app.command("train")
def train(
    models_dir: Path | None = typer.Option(None, "--models-dir", help="default: Settings.models_dir"),
    force: bool = typer.Option(True, "--force/--if-missing", help="retrain even if built"),
) -> None:
    """Train the credit model on the German credit data, export ONNX, write the model card."""
    from callvet.models import credit

    target = models_dir or get_settings().models_dir
    files = credit.build(target, force=force)
    card = json.loads(credit.card_path(target).read_text())
    m = card["metrics"]
    typer.echo(f"{card['version']}: selected {m['selected']} on validation; test AUC {m['test_auc']} "
               f"KS {m['test_ks']} (scorecard baseline AUC 0.836 / KS 0.532)")
    for f in files:
        typer.echo(f"  wrote {f}")


@decision_app.command("decide")
def decide(
    application: Path = typer.Argument(..., help="application JSON (see docs/contracts)"),
    investigation: Path | None = typer.Option(None, "--investigation", help="investigation JSON"),
    actor: str = typer.Option("cli", "--actor", help="recorded with the decision"),
) -> None:
    """Decide one application and store the decision."""
    try:
        eng = services().decision
        inv = _read_json(investigation) if investigation else None
        _echo(eng.decide(_read_json(application), inv, actor=actor).to_dict())
    except CallvetError as exc:
        raise fail(exc) from None


@decision_app.command("show")
def show(decision_id: str) -> None:
    """Show a stored decision with its inputs and versions."""
    try:
        _echo(services().decision.get(decision_id))
    except CallvetError as exc:
        raise fail(exc) from None


@decision_app.command("delete")
def delete(
    decision_id: str | None = typer.Argument(None, help="one decision to erase"),
    application: str | None = typer.Option(None, "--application", help="erase every decision of it"),
    reason: str = typer.Option(..., "--reason", help="why (kept in the audit log)"),
    key: str = _KEY,
) -> None:
    """Erase stored decisions and their inputs (admin key; audited)."""
    try:
        svc = services()
        p = _principal(svc.db, key)
        n = svc.decision.delete(
            actor=p.actor, reason=reason, decision_id=decision_id, application_id=application)
    except CallvetError as exc:
        raise fail(exc) from None
    typer.echo(f"erased {n} decision(s)")


@decision_app.command("simulate")
def simulate(
    n: int = typer.Option(20000, "--n", min=100, help="population size"),
    seed: int = typer.Option(7, "--seed"),
    outcomes: Path | None = typer.Option(None, "--outcomes", help="also write a tuning CSV here"),
) -> None:
    """Agreement of instant vs. post-investigation decisions on a simulated population, under the
    currently active policies (nothing is stored)."""
    from callvet.sim.decision import agreement, simulate, write_outcomes

    try:
        eng = services().decision
        pop = simulate(n, seed)
        instant = eng.decide_batch(pop.applications, actor="simulate", store=False)
        final = eng.decide_batch(pop.applications, pop.investigations, actor="simulate", store=False)
    except CallvetError as exc:
        raise fail(exc) from None
    _echo(agreement([d.decision.value for d in instant], [d.decision.value for d in final], pop.fraud))
    if outcomes:
        from callvet.decision.features import extract

        feats = extract(pop.applications, eng.scorer.encoder)
        cols = {**feats.rules, "score": eng.scorer.predict(feats.x)}
        write_outcomes(outcomes, cols, pop.bad)
        typer.echo(f"wrote {outcomes}")


@rules_app.command("list")
def list_() -> None:
    """Policies with their active version and how many are proposed."""
    from callvet.decision import store

    db = open_db()
    store.seed(db)
    for p in store.list_policies(db):
        typer.echo(f"{p['name']}\tactive v{p['active_version']}\t{p['versions']} version(s)\t"
                   f"{p['proposed']} proposed")


@rules_app.command("versions")
def versions(name: str) -> None:
    """Every version of a policy: status, who proposed and activated it, expected effect."""
    from callvet.decision import store

    try:
        db = open_db()
        store.seed(db)
        _echo(store.list_versions(db, name))
    except CallvetError as exc:
        raise fail(exc) from None


@rules_app.command("export")
def export(name: str, version: int, out: Path = typer.Option(..., "--out")) -> None:
    """Write a version's JDM graph to a file (to edit it in the JDM editor)."""
    from callvet.decision import store

    try:
        row = store.get_version(open_db(), name, version)
    except CallvetError as exc:
        raise fail(exc) from None
    out.write_text(json.dumps(row["content"], indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    typer.echo(f"wrote {out}")


@rules_app.command("propose")
def propose(name: str, graph: Path, note: str = typer.Option("", "--note"), key: str = _KEY) -> None:
    """Propose a new version from a JDM graph file (risk_officer); it is not active until approved."""
    from callvet.decision import store

    try:
        db = open_db()
        p = _principal(db, key, Role.RISK_OFFICER)
        store.seed(db)
        row = store.propose(db, name, _read_json(graph), actor=p.actor, note=note)
    except CallvetError as exc:
        raise fail(exc) from None
    typer.echo(f"proposed {name} v{row['version']} (status {row['status']})")


@rules_app.command("activate")
def activate(name: str, version: int, reason: str = typer.Option("", "--reason"), key: str = _KEY) -> None:
    """Activate a proposed version (approver; never the proposer)."""
    from callvet.decision import store

    try:
        db = open_db()
        p = _principal(db, key, Role.APPROVER)
        store.activate(db, name, version, actor=p.actor, reason=reason)
    except CallvetError as exc:
        raise fail(exc) from None
    typer.echo(f"activated {name} v{version}")


@rules_app.command("tune")
def tune(
    outcomes: Path = typer.Option(..., "--outcomes", help="CSV: policy input columns + bad (0/1)"),
    policy: str = typer.Option("prescreen", "--policy"),
    target: str = typer.Option(..., "--target", help="bad_rate=0.03 or approval_rate=0.7"),
    field: str = typer.Option("score", "--field", help="the input field whose thresholds are tuned"),
    key: str = _KEY,
) -> None:
    """Search thresholds against outcomes and write a PROPOSED version with its expected effect."""
    from callvet.decision.tuning import parse_target, propose_tuned

    try:
        db = open_db()
        p = _principal(db, key, Role.RISK_OFFICER)
        row = propose_tuned(db, policy, outcomes, parse_target(target), actor=p.actor, field=field)
    except CallvetError as exc:
        raise fail(exc) from None
    eff = row["expected_effect"]
    typer.echo(f"proposed {policy} v{row['version']} (status {row['status']}); not active until an "
               "approver activates it")
    typer.echo(f"  thresholds on {eff['field']} x{eff['factor']:g}")
    for k in ("approval_rate", "bad_rate"):
        typer.echo(f"  {k}: {eff['before'][k]:.4f} -> {eff['after'][k]:.4f}")


def register(app: typer.Typer) -> None:
    app.add_typer(decision_app, name="decision")
    app.add_typer(rules_app, name="rules")
