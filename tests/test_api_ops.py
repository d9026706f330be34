"""Operations: /readyz with reasons, Prometheus /metrics by route template, request ids in and out and
in JSON log lines, settings validated in one place (issue 9)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from callvet.api.app import create_app
from callvet.core.logs import JsonFormatter, RequestIdFilter
from callvet.core.migrations import config
from callvet.core.settings import Settings, SettingsError, env_value, load_settings, unknown_env
from fastapi.testclient import TestClient


def _app(tmp_path: Path, **kw: object) -> TestClient:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'c.db'}", **kw)
    return TestClient(create_app(settings))


def test_readyz_ready_and_each_reason(tmp_path: Path) -> None:
    with _app(tmp_path / "a") as c:
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready", r.text
        assert r.json()["checks"]["index"]["in_sync"] is True
        assert c.get("/healthz").status_code == 200
    with _app(tmp_path / "b", models_dir=tmp_path / "no-models") as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and "models_unavailable" in r.json()["reasons"]
    with _app(tmp_path / "c") as c:
        from alembic import command

        db = c.app.state.ctx.db
        with db.begin() as conn:
            command.stamp(config(conn), "0003_outbox")
        r = c.get("/readyz")
        assert r.status_code == 503 and "migrations_pending" in r.json()["reasons"]


def test_metrics_count_requests_by_route_template(tmp_path: Path) -> None:
    with _app(tmp_path) as c:
        for _ in range(3):
            c.get("/healthz")
        c.get("/v1/calls/abc")
        c.get("/no/such/path/123")
        text = c.get("/metrics").text
    assert 'callvet_http_requests_total{method="GET",route="/healthz",status="200"} 3.0' in text
    assert 'route="/v1/calls/{call_id}",status="401"' in text
    assert 'route="unmatched",status="404"' in text and "/no/such/path" not in text
    for name in ("callvet_http_request_duration_seconds_bucket", "callvet_calls_live",
                 "callvet_calls_alarmed", 'callvet_queue_depth{queue="outbox"}',
                 'callvet_queue_depth{queue="human_tasks"}', "callvet_blacklist_prints_stored"):
        assert name in text


def test_request_id_in_out_and_in_json_logs(tmp_path: Path) -> None:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    access = logging.getLogger("callvet.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        with _app(tmp_path) as c:
            assert c.get("/healthz", headers={"X-Request-ID": "rq-42"}).headers["x-request-id"] == "rq-42"
            bad = c.get("/healthz?token=secret", headers={"X-Request-ID": "no spaces\tor tabs"})
            assert len(bad.headers["x-request-id"]) == 32
            assert len(c.get("/healthz").headers["x-request-id"]) == 32
    finally:
        access.removeHandler(handler)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert lines[0]["request_id"] == "rq-42" and lines[0]["route"] == "/healthz" and lines[0]["status"] == 200
    assert all("secret" not in json.dumps(x) for x in lines)


def test_settings_are_validated_with_the_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLVET_MAX_UPLOAD_BYTES", "lots")
    monkeypatch.setenv("CALLVET_MAX_AUDIO_S", "-1")
    with pytest.raises(SettingsError) as exc:
        load_settings()
    assert "CALLVET_MAX_UPLOAD_BYTES" in exc.value.message and "CALLVET_MAX_AUDIO_S" in exc.value.message
    monkeypatch.delenv("CALLVET_MAX_UPLOAD_BYTES")
    monkeypatch.delenv("CALLVET_MAX_AUDIO_S")
    monkeypatch.setenv("CALLVET_CALL_WORKERS", "0")
    with pytest.raises(SettingsError, match="CALLVET_CALL_WORKERS"):
        env_value("call_workers")
    monkeypatch.setenv("CALLVET_CALL_WORKERS", "3")
    from callvet.voice.call.pipeline import CallConfig

    assert CallConfig().workers == 3
    monkeypatch.setenv("CALLVET_MAX_LAGS", "1")
    assert unknown_env() == ["CALLVET_MAX_LAGS"]
