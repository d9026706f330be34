"""``callvet call simulate`` against a real server, then ``callvet call show|list`` on its record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from callserver import ServerThread
from callvet.api.app import create_app
from callvet.cli import app as cli_app
from callvet.core import auth
from callvet.core.db import Database
from callvet.core.settings import Settings, get_settings
from speech import espeak, to_wav_bytes
from typer.testing import CliRunner


def test_simulate_then_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    monkeypatch.setenv("CALLVET_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CALLVET_DATABASE_URL", url)
    get_settings.cache_clear()
    db = Database(url)
    db.create_schema()
    robot = auth.create_key(db, "robot", "cli-test")
    wav = tmp_path / "answer.wav"
    wav.write_bytes(to_wav_bytes(espeak("Yes, I applied for the card myself last Tuesday.",
                                        sample_rate=16000), 16000))
    runner = CliRunner()
    with ServerThread(create_app(Settings(data_dir=tmp_path, database_url=url), db)) as srv:
        for proto, path in (("twilio", "/v1/calls/stream"), ("fork", "/v1/calls/fork")):
            r = runner.invoke(cli_app, ["call", "simulate", str(wav), "--url", srv.url(path),
                                        "--protocol", proto, "--param", "application_id=app-cli",
                                        "--token", robot])
            assert r.exit_code == 0, r.output
            events = [json.loads(line) for line in r.stdout.splitlines()]
            assert events[0]["event"] == "callvet.started"
            assert any(e["event"] == "callvet.answer_end" for e in events)
        bad = runner.invoke(cli_app, ["call", "simulate", str(wav), "--url", srv.url("/v1/calls/stream")])
        assert bad.exit_code == 1  # no key: closed with 1008, no call record
    r = runner.invoke(cli_app, ["call", "list", "--no-alarm"])
    assert r.exit_code == 0
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 2 and {row["application_id"] for row in rows} == {"app-cli"}
    shown = runner.invoke(cli_app, ["call", "show", events[0]["call_id"]])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["protocol"] == "fork"
    assert runner.invoke(cli_app, ["call", "show", "nope"]).exit_code == 2
    get_settings.cache_clear()
