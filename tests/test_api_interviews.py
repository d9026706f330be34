"""The interview API end to end with real HTTP requests (TestClient), on both databases."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from callvet.sim.questionnaire import GenuineApplicant, Guesser, make_application

EXAMPLE = json.loads((Path(__file__).parent / "data" / "application.example.json").read_text())
Api = tuple[Any, dict[str, dict[str, str]]]


def _drive(client: Any, h: dict[str, str], caller: Any) -> dict[str, Any]:
    app_json = caller.app.model_dump(mode="json")
    r = client.post("/v1/interviews", json={"application": app_json}, headers=h)
    assert r.status_code == 201, r.text
    body = r.json()
    iid = body["interview_id"]
    while "question" in body:
        q = body["question"]
        assert {"question_id", "text", "language", "answer_type", "checks"} <= set(q)
        reply = caller.respond(q)
        r = client.post(
            f"/v1/interviews/{iid}/answers", headers=h, json={"question_id": q["question_id"], **reply}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["assessment"]["outcome"] in {"correct", "partly", "wrong", "no_answer"}
    return {"interview_id": iid, **body}


def test_genuine_passes_and_guesser_fails_over_http(api: Api) -> None:
    client, h = api
    app = make_application(1234)
    good = _drive(client, h["robot"], GenuineApplicant(app, random.Random(1)))
    assert good["result"]["verdict"] == "pass" and 0 <= good["result"]["risk_score"] < 0.2
    bad = _drive(client, h["analyst"], Guesser(app, random.Random(2)))
    assert bad["result"]["verdict"] == "fail" and bad["result"]["reasons"]
    r = client.get(f"/v1/interviews/{good['interview_id']}", headers=h["auditor"])
    assert r.status_code == 200 and r.json()["result"] == good["result"]
    r = client.get("/v1/interviews", params={"application_id": app.application_id}, headers=h["analyst"])
    assert [i["attempt"] for i in r.json()["interviews"]] == [1, 2]
    r = client.get("/v1/audit", params={"target_type": "interview"}, headers=h["auditor"])
    assert {"interview.create", "interview.result"} <= {e["action"] for e in r.json()["entries"]}


def test_roles_and_errors(api: Api) -> None:
    client, h = api
    assert client.post("/v1/interviews", json={"application": EXAMPLE}).status_code == 401
    assert (
        client.post("/v1/interviews", json={"application": EXAMPLE}, headers=h["auditor"]).status_code == 403
    )
    bad = json.loads(json.dumps(EXAMPLE))
    del bad["applicant"]["name"]
    r = client.post("/v1/interviews", json={"application": bad}, headers=h["robot"])
    assert r.status_code == 422 and r.json()["field"] == "application.applicant.name"
    r = client.post("/v1/interviews", json={"application": EXAMPLE, "language": "en"}, headers=h["robot"])
    assert r.status_code == 201
    body = r.json()
    assert body["question"]["language"] == "en"
    iid = body["interview_id"]
    r = client.post(
        f"/v1/interviews/{iid}/answers", json={"question_id": "q9-x", "transcript": "hi"}, headers=h["robot"]
    )
    assert r.status_code == 409 and r.json()["code"] == "wrong_question"
    assert (
        client.post(
            "/v1/interviews/nope/answers", json={"question_id": "q1", "transcript": "x"}, headers=h["robot"]
        ).status_code
        == 404
    )
    r = client.post(f"/v1/interviews/{iid}/abort", json={"reason": "hung up"}, headers=h["robot"])
    assert r.status_code == 200 and r.json()["state"] == "aborted"
    r = client.post(
        f"/v1/interviews/{iid}/answers",
        json={"question_id": body["question"]["question_id"], "transcript": "Wang Jianguo"},
        headers=h["robot"],
    )
    assert r.status_code == 409
    assert (
        client.delete(f"/v1/interviews/{iid}", params={"reason": "erase"}, headers=h["analyst"]).status_code
        == 403
    )
    assert (
        client.delete(f"/v1/interviews/{iid}", params={"reason": "erase"}, headers=h["admin"]).status_code
        == 204
    )
    assert client.get(f"/v1/interviews/{iid}", headers=h["analyst"]).status_code == 404
