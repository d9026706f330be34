from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from callvet.sim.workflow import scripted_decider
from callvet.workflow.definitions import PROCESSES_DIR
from callvet.workflow.engine import WorkflowRuntime

APP = json.loads((Path(__file__).parent / "data" / "application.example.json").read_text())
Api = tuple[Any, dict[str, dict[str, str]]]


@pytest.fixture
def wapi(api: Api) -> Api:
    """The app with the workflow runtime deciding by the scripted policy (the decision engine is tested
    end to end in test_workflow_e2e)."""
    client, h = api
    ctx = client.app.state.ctx
    rt = WorkflowRuntime(ctx.db, settings=ctx.settings, decide=scripted_decider)
    rt.ensure_ready()
    ctx.override("workflow", rt)
    for role in ("approver", "risk_officer"):
        label = f"test-{role}"
        r = client.put(
            f"/v1/workflow/users/{label}",
            headers=h["risk_officer"],
            json={"role": role, "skills": ["card", "instalment", "limit"], "max_amount": 1e6},
        )
        assert r.status_code == 200, r.text
    return client, h


def test_definitions_upload_list_activate(wapi: Api) -> None:
    client, h = wapi
    xml = (PROCESSES_DIR / "card_issuance.bpmn").read_text().replace("Credit card issuance", "Card v2")
    xmlh = {**h["risk_officer"], "Content-Type": "application/xml"}
    r = client.post("/v1/workflow/definitions", content=xml, headers=xmlh)
    assert r.status_code == 201 and r.json() == {
        "process_key": "card_issuance",
        "version": 2,
        "active": False,
    }
    assert (
        client.post(
            "/v1/workflow/definitions",
            content=xml,
            headers={**h["approver"], "Content-Type": "application/xml"},
        ).status_code
        == 403
    )
    bad = xml.replace("decision == 'decline'", "__import__('os').system('touch /tmp/pwned')")
    r = client.post("/v1/workflow/definitions", content=bad, headers=xmlh)
    assert r.status_code == 422 and r.json()["element"].startswith("sequenceFlow#")
    assert (
        client.post(
            "/v1/workflow/definitions",
            content=xml,
            headers={**h["risk_officer"], "Content-Type": "application/json"},
        ).status_code
        == 415
    )
    defs = client.get("/v1/workflow/definitions", headers=h["analyst"]).json()["definitions"]
    assert {(d["process_key"], d["version"]) for d in defs} >= {("card_issuance", 1), ("card_issuance", 2)}
    r = client.post("/v1/workflow/definitions/card_issuance/versions/2/activate", headers=h["risk_officer"])
    assert r.status_code == 200 and r.json()["active"] is True
    assert (
        client.post(
            "/v1/workflow/definitions/card_issuance/versions/7/activate", headers=h["admin"]
        ).status_code
        == 404
    )


def test_card_flow_over_http(wapi: Api) -> None:
    client, h = wapi
    r = client.post(
        "/v1/workflow/instances",
        headers=h["analyst"],
        json={"process_key": "card_issuance", "data": {"application": APP}},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "waiting" and body["version"] == 1
    iid = body["instance_id"]
    listed = client.get("/v1/workflow/instances", headers=h["analyst"], params={"status": "waiting"}).json()
    assert [i["instance_id"] for i in listed["instances"]] == [iid]
    got = client.get(f"/v1/workflow/instances/{iid}", headers=h["analyst"]).json()
    assert got["waiting_for"] == ["investigation_result"]
    r = client.post(
        f"/v1/workflow/instances/{iid}/messages/investigation_result",
        headers=h["robot"],
        json={
            "payload": {
                "investigation": {"questionnaire": {"verdict": "inconclusive"}, "investigator": "robot-1"}
            }
        },
    )
    assert r.status_code == 200 and r.json()["status"] == "waiting"
    r = client.post(
        f"/v1/workflow/instances/{iid}/messages/investigation_result", headers=h["robot"], json={}
    )
    assert r.status_code == 409
    assert client.get("/v1/tasks", headers=h["risk_officer"]).json()["tasks"] == []
    tasks = client.get("/v1/tasks", headers=h["approver"]).json()["tasks"]
    assert len(tasks) == 1
    t = tasks[0]
    assert set(t) >= {"task_id", "instance_id", "name", "role", "priority", "due_at", "assignee"}
    assert t["assignee"] == "test-approver"
    assert client.get("/v1/tasks", headers=h["admin"]).json()["tasks"][0]["task_id"] == t["task_id"]
    url = f"/v1/tasks/{t['task_id']}/complete"
    assert client.post(url, headers=h["risk_officer"], json={"data": {}}).status_code == 403
    r = client.post(
        url,
        headers=h["approver"],
        json={"data": {"review_decision": "approve", "documents": ["id_card", "income_proof"]}},
    )
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert client.post(url, headers=h["approver"], json={"data": {}}).status_code == 409
    full = client.get(f"/v1/workflow/instances/{iid}", headers=h["auditor"]).json()
    assert full["data"]["review_decision"] == "approve" and full["data"]["outcome"] == "card_issued"
    assert "task.completed" in [e["kind"] for e in full["events"]]
    assert client.get("/v1/workflow/instances/nope", headers=h["auditor"]).status_code == 404
    m = client.get("/v1/supervision/metrics", headers=h["auditor"]).json()
    assert m["checked"] == 1 and m["coverage"] == 1.0
    rules = client.get("/v1/supervision/rules", headers=h["auditor"]).json()["rules"]
    assert rules and set(rules[0]) >= {"id", "kind", "title", "severity"}
    assert client.get("/v1/supervision/findings", headers=h["auditor"]).status_code == 200
    audit = client.get("/v1/audit", headers=h["auditor"], params={"target_type": "wf_task"}).json()["entries"]
    assert [e["action"] for e in audit] == ["workflow.task.complete"]


def test_bad_requests(wapi: Api) -> None:
    client, h = wapi
    r = client.post(
        "/v1/workflow/instances",
        headers=h["analyst"],
        json={"process_key": "card_issuance", "data": {"application": {"language": "fr"}}},
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_application"
    r = client.post("/v1/workflow/instances", headers=h["analyst"], json={"process_key": "nope", "data": {}})
    assert r.status_code == 404
    assert (
        client.post(
            "/v1/workflow/instances", headers=h["approver"], json={"process_key": "card_issuance", "data": {}}
        ).status_code
        == 403
    )
    assert client.post("/v1/tasks/nope/complete", headers=h["approver"], json={"data": {}}).status_code == 404
    r = client.put("/v1/workflow/config/products", headers=h["risk_officer"], json={"instalment": {"x": {}}})
    assert r.status_code == 422
    r = client.get("/v1/workflow/config/priority", headers=h["risk_officer"])
    assert r.status_code == 200 and r.json()["value"]["risk_weight"] == 40.0


def test_supervision_rectify_and_admin_tick(wapi: Api) -> None:
    client, h = wapi
    app = {**APP, "risk_reasons": [], "employment": {**APP["employment"], "monthly_income": 0}}
    r = client.post(
        "/v1/workflow/instances",
        headers=h["analyst"],
        json={"process_key": "card_issuance", "data": {"application": app}},
    )
    assert r.status_code == 201 and r.json()["status"] == "waiting"
    task = client.get("/v1/tasks", headers=h["approver"]).json()["tasks"][0]
    r = client.post(
        f"/v1/tasks/{task['task_id']}/complete",
        headers=h["approver"],
        json={"data": {"review_decision": "approve", "documents": ["id_card"]}},
    )
    assert r.status_code == 200
    findings = client.get("/v1/supervision/findings", headers=h["auditor"], params={"status": "open"}).json()
    ids = {f["rule_id"] for f in findings["findings"]}
    assert {"ISS-INC-001", "ISS-ID-002"} <= ids or "ISS-INC-001" in ids
    fid = findings["findings"][0]["id"]
    url = f"/v1/supervision/findings/{fid}/rectify"
    assert client.post(url, headers=h["auditor"], json={"note": "x"}).status_code == 403
    assert (
        client.post(url, headers=h["risk_officer"], json={"note": "Income proof obtained"}).status_code == 200
    )
    assert client.post(url, headers=h["risk_officer"], json={"note": "again"}).status_code == 409
    m = client.get("/v1/supervision/metrics", headers=h["risk_officer"]).json()
    assert m["rectified"] == 1 and m["rectified_within_3_days"] == 1 and m["coverage"] == 1.0
    assert client.post("/v1/workflow/tick", headers=h["risk_officer"]).status_code == 403
    stats = client.post("/v1/workflow/tick", headers=h["admin"]).json()
    assert set(stats) >= {"advanced", "reminded", "escalated", "assigned"}
    users = client.get("/v1/workflow/users", headers=h["risk_officer"]).json()["users"]
    assert {u["user_id"] for u in users} == {"test-approver", "test-risk_officer"}


def test_http_flow_with_the_shared_decision_engine(api: Api) -> None:
    """No override of the workflow service: it decides with the app's DecisionEngine (/v1/decisions)."""
    from decision_fixtures import example, make_engine

    client, h = api
    client.app.state.ctx.service("decision", lambda c: make_engine(c.db))
    r = client.post(
        "/v1/workflow/instances",
        headers=h["analyst"],
        json={
            "process_key": "card_issuance",
            "data": {"application": example(risk_reasons=[], requested_limit=20000)},
        },
    )
    assert r.status_code == 201 and r.json()["status"] == "completed", r.text
    full = client.get(f"/v1/workflow/instances/{r.json()['instance_id']}", headers=h["auditor"]).json()
    decision_id = full["data"]["prescreen"]["decision_id"]
    stored = client.get(f"/v1/decisions/{decision_id}", headers=h["auditor"])
    assert stored.status_code == 200 and stored.json()["decision"] == "approve"


def test_cancel_and_erase(wapi: Api) -> None:
    client, h = wapi
    r = client.post(
        "/v1/workflow/instances",
        headers=h["analyst"],
        json={"process_key": "card_issuance", "data": {"application": APP}},
    )
    iid = r.json()["instance_id"]
    assert (
        client.delete(
            f"/v1/workflow/instances/{iid}", headers=h["admin"], params={"reason": "GDPR request"}
        ).status_code
        == 409
    )
    r = client.post(
        f"/v1/workflow/instances/{iid}/cancel",
        headers=h["risk_officer"],
        json={"reason": "applicant withdrew"},
    )
    assert r.status_code == 200 and r.json()["status"] == "failed"
    assert (
        client.post(
            f"/v1/workflow/instances/{iid}/cancel", headers=h["risk_officer"], json={"reason": "again"}
        ).status_code
        == 409
    )
    assert (
        client.delete(
            f"/v1/workflow/instances/{iid}", headers=h["risk_officer"], params={"reason": "x"}
        ).status_code
        == 403
    )
    r = client.delete(
        f"/v1/workflow/instances/{iid}", headers=h["admin"], params={"reason": "erasure request"}
    )
    assert r.status_code == 200 and r.json()["deleted"]["wf_events"] > 0
    assert client.get(f"/v1/workflow/instances/{iid}", headers=h["auditor"]).status_code == 404
    audit = client.get("/v1/audit", headers=h["auditor"], params={"target_id": iid}).json()["entries"]
    assert [e["action"] for e in audit][:2] == ["workflow.instance.erase", "workflow.instance.cancel"]
