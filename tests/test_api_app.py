from __future__ import annotations

from typing import Any


def test_openapi_and_health(api: tuple[Any, dict[str, dict[str, str]]]) -> None:
    client, _ = api
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/openapi.json").json()["info"]["title"] == "callvet"


def test_audit_needs_auditor(api: tuple[Any, dict[str, dict[str, str]]]) -> None:
    client, h = api
    assert client.get("/v1/audit").status_code == 401
    assert client.get("/v1/audit", headers={"Authorization": "Bearer cv_x_y"}).status_code == 401
    assert client.get("/v1/audit", headers=h["robot"]).status_code == 403
    r = client.get("/v1/audit", headers=h["auditor"], params={"target_type": "api_key"})
    assert r.status_code == 200
    assert {e["action"] for e in r.json()["entries"]} == {"key.create"}
