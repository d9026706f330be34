from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from callvet.cli import app
from callvet.core.db import Database
from typer.testing import CliRunner


@pytest.fixture
def cli(sqlite_db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    from callvet.core.settings import get_settings

    monkeypatch.setenv("CALLVET_DATABASE_URL", sqlite_db.url)
    monkeypatch.setenv("CALLVET_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_cli_definitions_people_config_and_worker(cli: CliRunner, tmp_path: Path) -> None:
    out = cli.invoke(app, ["workflow", "definitions"])
    assert out.exit_code == 0, out.output
    assert {line.split("\t")[0] for line in out.stdout.splitlines()} == {
        "card_issuance",
        "instalment_loan",
        "limit_adjustment",
    }
    out = cli.invoke(
        app,
        [
            "workflow",
            "user",
            "alice",
            "--role",
            "approver",
            "--skills",
            "card,instalment",
            "--max-amount",
            "50000",
        ],
    )
    assert out.exit_code == 0 and json.loads(out.stdout)["skills"] == ["card", "instalment"]
    assert cli.invoke(app, ["workflow", "user", "bob", "--role", "janitor"]).exit_code == 2
    out = cli.invoke(app, ["workflow", "config", "priority"])
    cfg = json.loads(out.stdout)["value"]
    cfg["risk_weight"] = 55
    path = tmp_path / "priority.json"
    path.write_text(json.dumps(cfg))
    out = cli.invoke(app, ["workflow", "config", "priority", "--set", str(path)])
    assert out.exit_code == 0 and "version 2" in out.output
    bad = tmp_path / "bad.bpmn"
    bad.write_text("<not-bpmn")
    out = cli.invoke(app, ["workflow", "upload", str(bad)])
    assert out.exit_code == 2 and "invalid_bpmn" in out.output
    rules = cli.invoke(app, ["workflow", "rules", "--kind", "limit_adjustment"]).stdout.splitlines()
    assert len(rules) >= 50 and all("\tlimit_adjustment\t" in r for r in rules)
    data = tmp_path / "data.json"
    app_json = json.loads((Path(__file__).parent / "data" / "application.example.json").read_text())
    data.write_text(json.dumps({"application": app_json}))
    out = cli.invoke(app, ["workflow", "start", "card_issuance", "--data", str(data), "--no-run"])
    assert out.exit_code == 0 and json.loads(out.stdout)["status"] == "running"
    out = cli.invoke(
        app, ["workflow", "worker", "--once", "--decider", "callvet.sim.workflow:scripted_decider"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["advanced"] == 1
