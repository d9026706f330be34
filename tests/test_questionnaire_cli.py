"""``callvet interview`` commands against a real database in a temporary data directory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from callvet.cli import app
from typer.testing import CliRunner

EXAMPLE = Path(__file__).parent / "data" / "application.example.json"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    from callvet.core.settings import get_settings

    monkeypatch.setenv("CALLVET_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("CALLVET_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_start_answer_show(runner: CliRunner) -> None:
    r = runner.invoke(app, ["interview", "start", str(EXAMPLE)])
    assert r.exit_code == 0, r.output
    started = json.loads(r.stdout)
    q = started["question"]
    r = runner.invoke(
        app, ["interview", "answer", started["interview_id"], q["question_id"], "王建国", "--delay", "0.9"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["assessment"]["outcome"] == "correct"
    r = runner.invoke(app, ["interview", "show", started["interview_id"]])
    assert json.loads(r.stdout)["answers"][0]["transcript"] == "王建国"
    r = runner.invoke(app, ["interview", "answer", started["interview_id"], "q1-applicant_name", "x"])
    assert r.exit_code == 2 and "wrong_question" in r.output


def test_simulate_and_bad_input(runner: CliRunner, tmp_path: Path) -> None:
    r = runner.invoke(app, ["interview", "simulate", "--kind", "guesser", "--n", "5", "--store"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["fail"] == 5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"application_id": "X", "language": "en"}))
    r = runner.invoke(app, ["interview", "start", str(bad)])
    assert r.exit_code == 2 and "application.applicant" in r.output
