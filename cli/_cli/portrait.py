"""``callvet portrait build|tags|select|tune|propose|activate``: the bank's portrait from the shell.

Changes (selection, proposals, activation) authenticate with an API key (``--key`` or ``CALLVET_KEY``),
so roles and maker-checker bind as through the API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from callvet._cli.common import fail, open_db
from callvet._cli.decision import _principal, _read_json
from callvet.core.auth import Role
from callvet.core.errors import CallvetError
from callvet.core.settings import get_settings

__all__ = ["register"]

portrait_app = typer.Typer(
    help="Customer portrait: synthetic bank, tags, campaign selection.", no_args_is_help=True
)
_KEY = typer.Option(..., "--key", envvar="CALLVET_KEY", help="your API key (role checked)")
_BANK = typer.Option(
    None, "--bank", help="bank directory (default: CALLVET_PORTRAIT_BANK_DIR or var/portrait)"
)


def _bank(bank: Path | None) -> Path:
    from callvet.portrait.service import default_bank

    return bank or default_bank(get_settings())


def _echo(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=1, ensure_ascii=False, default=str))


@portrait_app.command("build")
def build(
    customers: int = typer.Option(
        0,
        "--customers",
        min=0,
        max=20_000_000,
        help="generate a synthetic bank of N customers first (0: use the bank as is)",
    ),
    seed: int = typer.Option(1, "--seed", min=0, max=2**31 - 1),
    import_dir: Path | None = typer.Option(
        None, "--import", help="import CSV/Parquet tables from this folder"
    ),
    as_of_day: int = typer.Option(360, "--as-of-day", min=1, max=100_000, help="for --import"),
    bank: Path | None = _BANK,
    threads: int = typer.Option(2, "--threads", min=1, max=64),
) -> None:
    """Generate (or import) a bank, train the propensity models and compute every tag."""
    from callvet.portrait import service
    from callvet.portrait.generate import BankSpec, generate

    try:
        target = _bank(bank)
        if customers:
            m = generate(target, BankSpec(n_customers=customers, seed=seed))
            typer.echo(f"generated {target}: {m['rows']}")
        elif import_dir:
            typer.echo(f"imported: {service.import_tables(import_dir, target, as_of_day=as_of_day)['rows']}")
        info = service.build(open_db(), target, actor="cli", threads=threads)
        _echo({k: info[k] for k in ("customers", "versions", "models", "trained", "seconds")})
    except CallvetError as exc:
        raise fail(exc) from None


@portrait_app.command("tags")
def tags(
    customer: int | None = typer.Argument(None, help="a customer id: show the portrait"),
    bank: Path | None = _BANK,
) -> None:
    """List the tag dimensions (active version, kind, categories), or one customer's portrait."""
    from callvet.portrait import service, store

    try:
        db = open_db()
        _echo(service.portrait(db, _bank(bank), customer) if customer else store.list_dimensions(db))
    except CallvetError as exc:
        raise fail(exc) from None


@portrait_app.command("select")
def select(
    size: int = typer.Option(..., "--size", min=1, max=100_000),
    reason: str = typer.Option(..., "--reason", help="why this campaign list (stored)"),
    filters: list[str] = typer.Option([], "--filter", help="DIMENSION=cat1,cat2 (repeatable)"),
    rank_by: str = typer.Option("response", "--rank-by"),
    contact_window_days: int = typer.Option(30, "--contact-window-days", min=0, max=365),
    product: str | None = typer.Option(None, "--product"),
    out: Path | None = typer.Option(None, "--out", help="write the ranked list as CSV"),
    bank: Path | None = _BANK,
    key: str = _KEY,
) -> None:
    """Select a campaign list (marketer): filters, exclusions, ranked by propensity; stored."""
    from callvet.portrait import service

    try:
        db = open_db()
        p = _principal(db, key, Role.MARKETER)
        parsed: dict[str, list[str]] = {}
        for f in filters:
            dim, _, cats = f.partition("=")
            parsed[dim.strip()] = [c.strip() for c in cats.split(",") if c.strip()]
        req = service.SegmentRequest(
            filters=parsed,
            size=size,
            reason=reason,
            rank_by=rank_by,
            contact_window_days=contact_window_days,
            product=product,
        )
        res = service.select_segment(db, _bank(bank), req, actor=p.actor)
        if out:
            out.write_text(
                "rank,customer_id,score\n"
                + "".join(f"{c['rank']},{c['customer_id']},{c['score']}\n" for c in res["customers"])
            )
        _echo({k: res[k] for k in ("segment_id", "counts", "versions")})
    except CallvetError as exc:
        raise fail(exc) from None


@portrait_app.command("tune")
def tune(
    target_bad_rate: float = typer.Option(..., "--target-bad-rate"),
    field: str = typer.Option("max_dpd_12m", "--field"),
    bank: Path | None = _BANK,
    key: str = _KEY,
) -> None:
    """Propose re-tuned risk thresholds from realised outcomes (risk_officer); activates nothing."""
    from callvet.portrait import service

    try:
        db = open_db()
        p = _principal(db, key, Role.RISK_OFFICER)
        out = service.propose_risk_tuning(
            db, _bank(bank), target_bad_rate=target_bad_rate, field=field, actor=p.actor
        )
        _echo({k: out[k] for k in ("dimension", "version", "status", "note", "expected_effect")})
    except CallvetError as exc:
        raise fail(exc) from None


@portrait_app.command("propose")
def propose(
    dimension: str, definition: Path, note: str = typer.Option("", "--note"), key: str = _KEY
) -> None:
    """Propose a new version of a tag definition (marketer or risk_officer)."""
    from callvet.portrait import store

    try:
        db = open_db()
        p = _principal(db, key, Role.MARKETER, Role.RISK_OFFICER)
        out = store.propose(db, dimension, _read_json(definition), actor=p.actor, note=note)
        _echo({k: out[k] for k in ("dimension", "version", "status")})
    except CallvetError as exc:
        raise fail(exc) from None


@portrait_app.command("activate")
def activate(
    dimension: str, version: int, reason: str = typer.Option("", "--reason"), key: str = _KEY
) -> None:
    """Activate a proposed version (approver; not the proposer)."""
    from callvet.portrait import store

    try:
        db = open_db()
        p = _principal(db, key, Role.APPROVER)
        out = store.activate(db, dimension, version, actor=p.actor, reason=reason)
        _echo({k: out[k] for k in ("dimension", "version", "status", "activated_by")})
    except CallvetError as exc:
        raise fail(exc) from None


def register(app: typer.Typer) -> None:
    app.add_typer(portrait_app, name="portrait")
