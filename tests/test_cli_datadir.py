"""Where the CLI and the server keep their data: CALLVET_DATA_DIR, else a configuration file, else an
absolute default, never the working directory (issue 11); which database a command uses, on stderr."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from callvet.cli import app
from callvet.core.settings import (
    SettingsError,
    default_data_dir,
    get_settings,
    load_settings,
    redact_url,
    resolve_data_dir,
)
from typer.testing import CliRunner


@pytest.fixture
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No data dir, database or config from the caller's environment; HOME and XDG inside tmp_path."""
    for name in ("CALLVET_DATA_DIR", "CALLVET_DATABASE_URL", "CALLVET_CONFIG", "XDG_CONFIG_HOME",
                 "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_default_is_absolute_and_not_the_working_directory(clean: Path) -> None:
    choice = resolve_data_dir()
    assert choice.source == "default" and choice.path.is_absolute()
    assert choice.path == default_data_dir()
    assert not str(choice.path).startswith(str(Path.cwd()))
    # this is a source checkout: its var/, whichever directory the command runs in
    assert (choice.path.parent / "pyproject.toml").is_file()
    assert load_settings().data_dir == choice.path


def test_user_config_file_then_environment(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = clean / "home" / ".config" / "callvet" / "callvet.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text('data_dir = "../../callvet-data"\n')
    choice = resolve_data_dir()
    assert choice.path == (clean / "home" / "callvet-data").resolve() and choice.source == str(conf)
    s = load_settings()
    assert s.data_dir == choice.path and s.database_url == f"sqlite:///{choice.path / 'callvet.db'}"

    monkeypatch.setenv("CALLVET_DATA_DIR", str(clean / "from-env"))
    assert resolve_data_dir().path == clean / "from-env"
    assert resolve_data_dir().source == "CALLVET_DATA_DIR"


def test_explicit_config_with_database_url(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = clean / "etc.toml"
    conf.write_text('data_dir = "/srv/callvet"\ndatabase_url = "postgresql+psycopg://u:s3cret@db/cv"\n')
    monkeypatch.setenv("CALLVET_CONFIG", str(conf))
    s = load_settings()
    assert s.data_dir == Path("/srv/callvet") and s.database_url.endswith("u:s3cret@db/cv")
    monkeypatch.setenv("CALLVET_DATABASE_URL", "sqlite:////tmp/x.db")
    assert load_settings().database_url == "sqlite:////tmp/x.db"  # the environment wins


@pytest.mark.parametrize("text,why", [("data_dir = 3\n", "non-empty string"),
                                      ("data_dir = '/x'\nencoder = 'y'\n", "unknown keys"),
                                      ("data_dir = \n", "configuration file")])
def test_bad_config_is_a_clear_error(clean: Path, monkeypatch: pytest.MonkeyPatch, text: str,
                                     why: str) -> None:
    conf = clean / "bad.toml"
    conf.write_text(text)
    monkeypatch.setenv("CALLVET_CONFIG", str(conf))
    with pytest.raises(SettingsError, match=why):
        load_settings()


def test_missing_explicit_config_is_an_error(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLVET_CONFIG", str(clean / "nope.toml"))
    with pytest.raises(SettingsError, match="no such file"):
        resolve_data_dir()
    r = CliRunner().invoke(app, ["audit"])
    assert r.exit_code != 0


def test_redact_url() -> None:
    assert redact_url("postgresql+psycopg://cv:hunter2@db:5432/cv") == "postgresql+psycopg://cv:***@db:5432/cv"
    assert redact_url("sqlite:////var/lib/callvet/callvet.db") == "sqlite:////var/lib/callvet/callvet.db"
    assert "hunter2" not in redact_url("not a url hunter2")


def test_command_says_which_database(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = clean / "data"
    monkeypatch.setenv("CALLVET_DATA_DIR", str(data))
    r = CliRunner().invoke(app, ["audit"])
    assert r.exit_code == 0, r.output
    assert f"callvet: database sqlite:///{data / 'callvet.db'} (data dir {data}, from CALLVET_DATA_DIR)" \
        in r.stderr
    assert r.stdout == "" and not (Path.cwd() / "var").exists()


def test_identify_against_a_fresh_data_dir_is_refused(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from speech import espeak, to_wav_bytes

    monkeypatch.setenv("CALLVET_DATA_DIR", str(clean / "fresh"))
    probe = clean / "probe.wav"
    probe.write_bytes(to_wav_bytes(espeak("I would like to apply for a credit card today.", "en-us"), 16000))
    r = CliRunner().invoke(app, ["identify", str(probe)])
    assert r.exit_code == 2 and "empty_blacklist" in r.stderr and "no match" not in r.stdout
    assert str(clean / "fresh" / "callvet.db") in r.stderr
    assert os.listdir(Path.cwd()) == []
