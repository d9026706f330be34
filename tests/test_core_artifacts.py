"""The artifact contract's atomic manifest write: a reader sees the old file or the whole new one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from unittest import mock

import pytest
from callvet.core.artifacts import write_json_atomic


def test_write_json_atomic_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{"old": true}\n')
    write_json_atomic(path, {"b": 2, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 2}
    assert path.read_text().endswith("\n")
    assert path.read_text().index('"a"') < path.read_text().index('"b"')
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_write_json_atomic_failure_keeps_old_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{"old": true}\n')
    with mock.patch("callvet.core.artifacts.os.replace", side_effect=OSError("disk full")), \
            pytest.raises(OSError, match="disk full"):
        write_json_atomic(path, {"new": True})
    assert json.loads(path.read_text()) == {"old": True}
    assert sorted(os.listdir(tmp_path)) == ["manifest.json"]


def test_write_json_atomic_unserialisable_body_keeps_old(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{"old": true}\n')
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"old": True}
    assert sorted(os.listdir(tmp_path)) == ["manifest.json"]
