"""``callvet blacklist`` and ``callvet identify`` on real speech files, SQLite under a temp data dir."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from callvet.cli import app
from callvet.core import audit
from callvet.core.db import Database
from callvet.core.settings import get_settings
from speech import espeak, to_wav_bytes
from typer.testing import CliRunner

TEXTS = [
    "My name is John and I would like to apply for a credit card today please.",
    "I was born in nineteen eighty two and I live on Main Street in Springfield.",
    "The quick brown fox jumps over the lazy dog near the river bank at noon.",
    "Please send the new card to my office address and not to my home this time.",
]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("CALLVET_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("CALLVET_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def write(path: Path, voice: str, text_no: int) -> Path:
    path.write_bytes(to_wav_bytes(espeak(TEXTS[text_no], voice), 16000))
    return path


def test_add_list_identify_remove(env: Path) -> None:
    runner = CliRunner()
    a0, a1 = write(env / "a0.wav", "en-us+m3", 0), write(env / "a1.wav", "en-us+m3", 1)
    probe, genuine = write(env / "probe.wav", "en-us+m3", 2), write(env / "g.wav", "en-us+f2", 2)
    r = runner.invoke(app, ["blacklist", "add", "fraudster A", str(a0), str(a1), "--notes", "case 9"])
    assert r.exit_code == 0, r.output
    ident = int(r.stdout.split()[1])
    assert r.stdout.count("sample ") == 2

    r = runner.invoke(app, ["blacklist", "list", "--json"])
    rows = json.loads(r.stdout)
    assert r.exit_code == 0 and rows[0]["id"] == ident and rows[0]["samples"] == 2
    assert rows[0]["notes"] == "case 9" and rows[0]["created_by"].startswith("cli:")

    r = runner.invoke(app, ["blacklist", "status"])
    assert r.exit_code == 0 and json.loads(r.stdout)["searchable_prints"] == 2
    r = runner.invoke(app, ["identify", str(probe), "--json"])
    res = json.loads(r.stdout)
    assert r.exit_code == 0 and res["alarm"] and res["matches"][0]["identity_id"] == ident
    r = runner.invoke(app, ["identify", str(genuine)])
    assert r.exit_code == 0 and r.stdout.startswith("no match")

    a3 = write(env / "a3.wav", "en-us+m3", 3)
    r = runner.invoke(app, ["blacklist", "add-sample", str(ident), str(a3)])
    assert r.exit_code == 0, r.output
    assert f"identity {ident}\tfraudster A\n" in r.stdout and r.stdout.count("sample ") == 1
    assert json.loads(runner.invoke(app, ["blacklist", "list", "--json"]).stdout)[0]["samples"] == 3
    r = runner.invoke(app, ["blacklist", "add-sample", str(ident + 1), str(a3)])
    assert r.exit_code == 2 and "not_found" in r.output

    r = runner.invoke(app, ["blacklist", "remove", str(ident), "--reason", "merged into case 10"])
    assert r.exit_code == 0 and "3 prints" in r.stdout
    r = runner.invoke(app, ["identify", str(probe), "--json"])
    # an emptied blacklist is refused, not searched: "no match" against nothing would clear a fraudster
    assert r.exit_code == 2 and "empty_blacklist" in r.output and r.stdout == ""
    db = Database(get_settings().database_url)
    entry = audit.query(db, target_type="blacklist_identity", action="blacklist.identity.delete")[0]
    assert entry["reason"] == "merged into case 10" and entry["actor"].startswith("cli:")
    db.dispose()
    r = runner.invoke(app, ["blacklist", "remove", str(ident), "--reason", "again"])
    assert r.exit_code == 2 and "not_found" in r.output


def test_bad_audio_exits_2_and_adds_nothing(env: Path) -> None:
    runner = CliRunner()
    good = write(env / "good.wav", "en-us+m3", 0)
    junk = env / "junk.wav"
    junk.write_bytes(b"definitely not a wav file")
    quiet = env / "quiet.wav"
    quiet.write_bytes(to_wav_bytes((np.random.default_rng(0).standard_normal(48000) * 0.003)
                                   .astype(np.float32), 16000))
    r = runner.invoke(app, ["blacklist", "add", "fraudster", str(good), str(junk), str(quiet)])
    assert r.exit_code == 2
    assert "not_audio" in r.output and "too_little_speech" in r.output and "nothing was added" in r.output
    r = runner.invoke(app, ["blacklist", "list", "--json"])
    assert json.loads(r.stdout) == []
    r = runner.invoke(app, ["identify", str(junk)])
    assert r.exit_code == 2 and "empty_blacklist" in r.output

    r = runner.invoke(app, ["blacklist", "add", "fraudster", str(good)])
    ident = int(r.stdout.split()[1])
    r = runner.invoke(app, ["blacklist", "add-sample", str(ident), str(junk), str(quiet)])
    assert r.exit_code == 2 and "nothing was added" in r.output
    assert json.loads(runner.invoke(app, ["blacklist", "list", "--json"]).stdout)[0]["samples"] == 1
    r = runner.invoke(app, ["identify", str(junk)])
    assert r.exit_code == 2 and "not_audio" in r.output
    r = runner.invoke(app, ["identify", str(env / "missing.wav")])
    assert r.exit_code == 2
