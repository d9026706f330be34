from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from callvet.cli import app
from callvet.core.settings import get_settings
from decision_fixtures import EXAMPLE, credit_models_dir
from typer.testing import CliRunner


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("CALLVET_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CALLVET_MODELS_DIR", str(credit_models_dir()))
    monkeypatch.delenv("CALLVET_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_rules_maker_checker_and_tune(cli_env: Path) -> None:
    run = CliRunner().invoke
    officer = run(app, ["keys", "create", "--role", "risk_officer", "--label", "ann"]).stdout.strip()
    approver = run(app, ["keys", "create", "--role", "approver", "--label", "bob"]).stdout.strip()
    assert "prescreen\tactive v1" in run(app, ["rules", "list"]).stdout
    outcomes = cli_env / "o.csv"
    sim = run(app, ["decision", "simulate", "--n", "2000", "--outcomes", str(outcomes)])
    assert sim.exit_code == 0, sim.output
    assert json.loads(sim.stdout[: sim.stdout.rindex("}") + 1])["agreement_no_new_information"] > 0.95
    tuned = run(app, ["rules", "tune", "--outcomes", str(outcomes), "--policy", "prescreen",
                      "--target", "approval_rate=0.6", "--key", officer])
    assert tuned.exit_code == 0, tuned.output
    assert "proposed prescreen v2 (status proposed)" in tuned.stdout
    assert "prescreen\tactive v1\t2 version(s)\t1 proposed" in run(app, ["rules", "list"]).stdout
    own = run(app, ["rules", "activate", "prescreen", "2", "--key", officer])
    assert own.exit_code == 2 and "needs approver" in own.output
    assert run(app, ["rules", "activate", "prescreen", "2", "--key", approver]).exit_code == 0
    assert "prescreen\tactive v2" in run(app, ["rules", "list"]).stdout
    app_file = cli_env / "app.json"
    app_file.write_text(json.dumps(EXAMPLE))
    decided = run(app, ["decision", "decide", str(app_file)])
    assert decided.exit_code == 0, decided.output
    d = json.loads(decided.stdout)
    assert d["policy_versions"]["prescreen"] == 2
    shown = run(app, ["decision", "show", d["decision_id"]])
    assert json.loads(shown.stdout)["decision_id"] == d["decision_id"]
    admin = run(app, ["keys", "create", "--role", "admin", "--label", "dpo"]).stdout.strip()
    denied = run(app, ["decision", "delete", d["decision_id"], "--reason", "x", "--key", approver])
    assert denied.exit_code == 2
    erased = run(app, ["decision", "delete", d["decision_id"], "--reason", "erasure", "--key", admin])
    assert erased.exit_code == 0 and "erased 1" in erased.stdout
    assert run(app, ["decision", "show", d["decision_id"]]).exit_code == 2
    bad = run(app, ["rules", "tune", "--outcomes", str(outcomes), "--target", "fast=1", "--key", officer])
    assert bad.exit_code == 2
