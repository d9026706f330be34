"""``callvet models build`` orchestration and the models CLI (typer's CliRunner)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from callvet.cli import app
from callvet.core.settings import get_settings
from callvet.models import build as build_mod
from callvet.models import ge2e
from callvet.models.build import Status, build_all
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir holding a GE2E build: a copy of the one ./dev test made, else built here."""
    target = tmp_path_factory.mktemp("models")
    configured = get_settings().models_dir
    if ge2e.is_built(configured):
        shutil.copytree(configured / "ge2e", target / "ge2e")
    else:
        ge2e.build(target)
    return target


def test_manifest_records_provenance(built: Path) -> None:
    m = json.loads((built / "ge2e" / "manifest.json").read_text())
    assert m["source"]["package"] == "resemblyzer" and m["source"]["version"]
    assert m["embedding_size"] == 256 and m["sample_rate"] == 16000
    assert m["input"]["shape"] == ["batch", 160, 40]
    assert set(m["files"]) == {"model.onnx", "mel_basis.npy"} and m["sha256"] == m["files"]["model.onnx"]
    assert {"torch", "onnx", "librosa"} <= set(m["versions"])
    assert m["frontend"]["n_fft"] == 400 and m["frontend"]["hop_length"] == 160 and m["built_at"]


def test_if_missing_skips_built_and_absent_modules(built: Path) -> None:
    lines: list[str] = []
    out = build_all(built, if_missing=True, modules=("callvet.models.ge2e", "callvet.models.not_written_yet"),
                    progress=lines.append)
    assert [o.status for o in out] == [Status.UP_TO_DATE, Status.SKIPPED]
    assert lines == ["ge2e: up to date", "not_written_yet: skipped (module not present)"]


def test_broken_builder_is_reported_and_others_still_run(
        tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "callvet_fake_builder.py").write_text("import callvet_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "callvet_fake_builder", raising=False)
    out = build_all(built, if_missing=True, modules=("callvet_fake_builder", "callvet.models.ge2e"))
    assert [o.status for o in out] == [Status.FAILED, Status.UP_TO_DATE]
    assert "callvet_no_such_dependency" in out[0].note

    monkeypatch.setattr(build_mod, "BUILDERS", ("callvet_fake_builder", "callvet.models.ge2e"))
    res = CliRunner().invoke(app, ["models", "build", "--if-missing", "--models-dir", str(built)])
    assert res.exit_code == 1
    assert "callvet_fake_builder: FAILED" in res.output and "ge2e: up to date" in res.output


def test_ge2e_builds_into_empty_dir_and_force_rebuilds(tmp_path: Path, built: Path) -> None:
    assert not ge2e.is_built(tmp_path)
    (tmp_path / "ge2e").mkdir()
    (tmp_path / "ge2e" / "model.onnx").write_bytes(b"half a model")  # an interrupted build
    assert not ge2e.is_built(tmp_path)
    files = ge2e.build(tmp_path)
    assert {f.name for f in files} == {"manifest.json", "model.onnx", "mel_basis.npy"}
    assert ge2e.is_built(tmp_path) and ge2e.build(tmp_path) == []
    assert ge2e.build(tmp_path, force=True)
    new = json.loads((tmp_path / "ge2e" / "manifest.json").read_text())
    old = json.loads((built / "ge2e" / "manifest.json").read_text())
    # Byte-identical rebuild: trained back ends are keyed on the model's sha256, so a fresh clone's
    # `callvet models build` must reproduce it exactly.
    assert new["files"] == old["files"] and new["sha256"] == old["sha256"]
    new["format"] = 0
    (tmp_path / "ge2e" / "manifest.json").write_text(json.dumps(new))
    assert not ge2e.is_built(tmp_path)


def test_cli_build_list_and_import(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setattr(build_mod, "BUILDERS", ("callvet.models.ge2e", "callvet.models.not_written_yet"))
    res = runner.invoke(app, ["models", "build", "--if-missing", "--models-dir", str(built)])
    assert res.exit_code == 0, res.output
    assert "ge2e: up to date" in res.output and "not_written_yet: skipped" in res.output

    res = runner.invoke(app, ["models", "list", "--models-dir", str(built)])
    assert res.exit_code == 0 and "ge2e\tdim=256" in res.output and res.output.rstrip().endswith("ok")

    bad = tmp_path / "bad"
    shutil.copytree(built / "ge2e", bad / "ge2e")
    (bad / "ge2e" / "mel_basis.npy").write_bytes(b"x")
    res = runner.invoke(app, ["models", "list", "--models-dir", str(bad)])
    assert res.exit_code == 0 and "BAD (encoder_corrupt)" in res.output

    res = runner.invoke(app, ["models", "import-speechbrain", str(tmp_path / "nowhere"), "--models-dir",
                              str(tmp_path)])
    assert res.exit_code == 2 and "not_speechbrain_dir" in res.output
