from __future__ import annotations

from typing import Any

from decision_fixtures import example, make_engine

Api = tuple[Any, dict[str, dict[str, str]]]


def _client(api: Api) -> Api:
    client, h = api
    ctx = client.app.state.ctx
    ctx.service("decision", lambda c: make_engine(c.db))
    return client, h


def test_decide_read_back_and_roles(api: Api) -> None:
    client, h = _client(api)
    inv = {"voiceprint_alarm": False, "questionnaire": {"verdict": "pass", "risk_score": 0.1}}
    body = {"application": example(), "investigation": inv}
    assert client.post("/v1/decisions", json=body).status_code == 401
    assert client.post("/v1/decisions", json=body, headers=h["auditor"]).status_code == 403
    r = client.post("/v1/decisions", json=body, headers=h["robot"])
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["decision"] == "approve" and d["credit_limit"] > 0
    assert set(d) >= {"decision", "credit_limit", "score", "reasons", "policy_versions", "model_version",
                      "decision_id"}
    got = client.get(f"/v1/decisions/{d['decision_id']}", headers=h["auditor"])
    assert got.status_code == 200
    stored = got.json()
    assert stored["investigation"]["questionnaire"]["verdict"] == "pass"
    assert stored["policy_versions"] == d["policy_versions"]
    assert client.get("/v1/decisions/nope", headers=h["auditor"]).status_code == 404


def test_batch_and_validation_errors(api: Api) -> None:
    client, h = _client(api)
    items = [{"application": example(application_id=f"B-{i}", risk_reasons=[])} for i in range(5)]
    r = client.post("/v1/decisions:batch", json={"items": items}, headers=h["analyst"])
    assert r.status_code == 200, r.text
    out = r.json()["items"]
    assert [o["application_id"] for o in out] == [f"B-{i}" for i in range(5)]
    assert all(client.get(f"/v1/decisions/{o['decision_id']}", headers=h["analyst"]).status_code == 200
               for o in out)
    bad = client.post("/v1/decisions", json={"application": example(employment={"monthly_income": "lots"})},
                      headers=h["robot"])
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    err = bad.json()["errors"][0]
    assert err["field"] == "application.employment.monthly_income" and err["in"] == "body"
    assert client.post("/v1/decisions:batch", json={"items": []}, headers=h["robot"]).status_code == 422


def test_policy_versions_maker_checker(api: Api) -> None:
    client, h = _client(api)
    r = client.get("/v1/policies", headers=h["auditor"])
    assert r.status_code == 200
    assert {p["name"]: p["active_version"] for p in r.json()["policies"]} == {
        "prescreen": 1, "investigation": 1, "credit_limit": 1}
    graph = client.get("/v1/policies/credit_limit/versions/1", headers=h["auditor"]).json()["content"]
    graph["nodes"][3]["content"]["rules"][0]["product_o0"] = "120000"
    url = "/v1/policies/credit_limit/versions"
    assert client.post(url, json=graph, headers=h["approver"]).status_code == 403
    assert client.post("/v1/policies/credit_limit/versions", json={"nodes": 1},
                       headers=h["risk_officer"]).status_code == 422
    p = client.post("/v1/policies/credit_limit/versions", json=graph, headers=h["risk_officer"],
                    params={"note": "raise platinum cap"})
    assert p.status_code == 201 and p.json()["status"] == "proposed" and p.json()["version"] == 2
    assert client.post("/v1/policies/credit_limit/versions/2/activate",
                       headers=h["risk_officer"]).status_code == 403
    own = client.post("/v1/policies/credit_limit/versions", json=graph, headers=h["admin"])
    v3 = own.json()["version"]
    denied = client.post(f"/v1/policies/credit_limit/versions/{v3}/activate", headers=h["admin"])
    assert denied.status_code == 403 and denied.json()["code"] == "maker_checker"
    ok = client.post("/v1/policies/credit_limit/versions/2/activate", headers=h["approver"])
    assert ok.status_code == 200 and ok.json()["status"] == "active"
    app = example(risk_reasons=[], requested_limit=None, employment={"monthly_income": 900000})
    d = client.post("/v1/decisions", json={"application": app}, headers=h["robot"]).json()
    assert d["policy_versions"]["credit_limit"] == 2 and d["credit_limit"] == 120000
    versions = client.get("/v1/policies/credit_limit/versions", headers=h["auditor"]).json()["versions"]
    assert [v["status"] for v in versions] == ["retired", "active", "proposed"]
    audit = client.get("/v1/audit", headers=h["auditor"], params={"target_type": "policy"}).json()["entries"]
    assert any(e["action"] == "policy.activate" and e["target_id"] == "credit_limit@2" for e in audit)


def test_erase_decisions_admin_only_and_audited(api: Api) -> None:
    client, h = _client(api)
    ids = [client.post("/v1/decisions", json={"application": example()}, headers=h["robot"]).json()
           ["decision_id"] for _ in range(2)]
    url = f"/v1/decisions/{ids[0]}"
    assert client.delete(url, params={"reason": "x"}, headers=h["approver"]).status_code == 403
    assert client.delete(url, headers=h["admin"]).status_code == 422
    r = client.delete(url, params={"reason": "erasure request #12"}, headers=h["admin"])
    assert r.status_code == 200 and r.json() == {"deleted": 1}
    assert client.get(url, headers=h["auditor"]).status_code == 404
    r = client.delete("/v1/decisions", params={"application_id": "APP-2026-000123", "reason": "erasure"},
                      headers=h["admin"])
    assert r.json() == {"deleted": 1}
    assert client.get(f"/v1/decisions/{ids[1]}", headers=h["auditor"]).status_code == 404
    entries = client.get("/v1/audit", headers=h["auditor"],
                         params={"action": "decision.delete"}).json()["entries"]
    assert {e["reason"] for e in entries} == {"erasure request #12", "erasure"}
    assert all("applicant" not in str(e["details"]) for e in entries)


def test_simulate_a_draft_policy_over_rest(api: Api) -> None:
    client, h = _client(api)
    items = [{"application": example(application_id=f"S-{i}",
                                      applicant={"birth_date": f"{1960 + 8 * i}-05-01"})} for i in range(6)]
    assert client.post("/v1/decisions:batch", json={"items": items}, headers=h["robot"]).status_code == 200
    graph = client.get("/v1/policies/prescreen/versions/1", headers=h["auditor"]).json()["content"]
    table = next(n for n in graph["nodes"] if n["type"] == "decisionTableNode")
    table["content"]["rules"][0]["screen_i0"] = "< 120"  # everyone is "underage": every verdict declines
    url = "/v1/policies/prescreen/simulate"
    assert client.post(url, json=graph, headers=h["approver"]).status_code == 403
    r = client.post(url, json=graph, headers=h["risk_officer"])
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["replayed"] == 6 and out["draft_mix"] == {"decline": 6}
    assert out["changed"] == 6 - out["active_mix"].get("decline", 0)
    assert client.post(f"{url}?limit=2", json=graph, headers=h["risk_officer"]).json()["replayed"] == 2
    assert client.post(f"{url}?limit=0", json=graph, headers=h["risk_officer"]).status_code == 422
    assert client.post(url, json={"nodes": 1}, headers=h["risk_officer"]).status_code == 422
    assert [v["version"] for v in client.get("/v1/policies/prescreen/versions",
                                             headers=h["auditor"]).json()["versions"]] == [1]
