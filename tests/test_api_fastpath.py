"""Issue 17's direct route for ``POST /v1/decisions``: a request that passes is answered without FastAPI's
per-request machinery, with the answer the documented route gives; every other request goes on to the
documented route and gets exactly its error."""

from __future__ import annotations

import json
from typing import Any

from callvet.api.fastpath import FastRoute
from decision_fixtures import example
from sqlalchemy import func, select

Api = tuple[Any, dict[str, dict[str, str]]]


def _fast(client: Any) -> FastRoute:
    route = client.app.router.routes[0]
    assert isinstance(route, FastRoute)
    return route


def _problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()  # type: ignore[no-any-return]


def test_a_valid_request_is_answered_directly_and_stored(api: Api) -> None:
    client, h = api
    fast = _fast(client)
    before = fast.taken
    r = client.post("/v1/decisions", headers=h["robot"], json={"application": example()})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert fast.taken == before + 1
    assert set(body) >= {"decision_id", "application_id", "decision", "credit_limit", "score", "score_band",
                         "reasons", "policy_versions", "model_version"}
    assert int(r.headers["content-length"]) == len(r.content)
    from callvet.decision.tables import decision_records

    with client.app.state.ctx.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(decision_records).where(
            decision_records.c.decision_id == body["decision_id"])).scalar() == 1
    again = client.get(f"/v1/decisions/{body['decision_id']}", headers=h["analyst"])
    assert again.status_code == 200 and again.json()["decision"] == body["decision"]
    metrics = client.get("/metrics", headers=h["admin"]).text
    assert 'callvet_http_requests_total{method="POST",route="/v1/decisions",status="200"}' in metrics


def test_idempotent_retries_on_the_direct_route(api: Api) -> None:
    client, h = api
    hdr = {**h["robot"], "Idempotency-Key": "fast-1"}
    first = client.post("/v1/decisions", headers=hdr, json={"application": example()})
    again = client.post("/v1/decisions", headers=hdr, json={"application": example()})
    assert first.status_code == again.status_code == 200
    assert again.json()["decision_id"] == first.json()["decision_id"] and again.json()["replayed"] is True
    other = client.post("/v1/decisions", headers=hdr,
                        json={"application": {**example(), "application_id": "SOMEONE-ELSE"}})
    assert _problem(other, 409)["code"] == "idempotency_key_reused"


def test_the_caller_is_checked_on_the_direct_route(api: Api) -> None:
    client, h = api
    fast = _fast(client)
    ok = {"application": example()}
    assert _problem(client.post("/v1/decisions", json=ok), 401)["code"] == "unauthenticated"
    assert _problem(client.post("/v1/decisions", json=ok, headers=h["auditor"]), 403)["code"] == "forbidden"
    taken = fast.taken
    inv = {"questionnaire": {"verdict": "pass", "risk_score": True, "reasons": []}}  # lax-valid, not strict
    r = client.post("/v1/decisions", headers=h["robot"],
                    json={"application": example(), "investigation": inv})
    assert _problem(r, 422)["field"] == "investigation.questionnaire.risk_score"
    assert fast.taken == taken + 1  # the strict check of the shared key check, not a fallback


def test_what_the_direct_route_does_not_take_gets_the_documented_routes_error(api: Api) -> None:
    client, h = api
    fast = _fast(client)
    before = fast.handed_back
    hdr = {**h["robot"], "Content-Type": "application/json"}
    cases = [
        (client.post("/v1/decisions", headers=hdr, content=b'{"application": '), "body"),
        (client.post("/v1/decisions", headers=hdr, content=b""), "body"),
        (client.post("/v1/decisions", headers=h["robot"], json={"application": {"x": 1}}), "application"),
        (client.post("/v1/decisions", headers={**h["robot"], "Idempotency-Key": "a" * 129},
                     json={"application": example()}), "idempotency-key"),
        (client.post("/v1/decisions", headers={**h["robot"], "Idempotency-Key": "has space"},
                     json={"application": example()}), "idempotency-key"),
    ]
    for r, where in cases:
        body = _problem(r, 422)
        assert body["code"] == "invalid_input" and where in json.dumps(body), body
    assert fast.handed_back == before + len(cases)
    # FastAPI parses the JSON before it checks the caller: a malformed body is 422 even without a key
    assert _problem(client.post("/v1/decisions", content=b"{", headers={"Content-Type": "application/json"}),
                    422)["code"] == "invalid_input"
    # a body FastAPI would refuse is refused after the caller is checked, as on the documented route
    assert _problem(client.post("/v1/decisions", json={"application": {"x": 1}}), 401)["code"] \
        == "unauthenticated"
    r = client.post("/v1/decisions", headers={**h["robot"], "Content-Type": "text/plain"}, content=b"{}")
    assert _problem(r, 415)["code"] == "unsupported_media_type"


def test_other_methods_on_the_path_are_not_taken(api: Api) -> None:
    client, h = api
    r = client.delete("/v1/decisions", headers=h["admin"], params={"application_id": "nobody", "reason": "x"})
    assert r.status_code == 404, r.text
    r = client.put("/v1/decisions", headers=h["admin"], json={})
    assert _problem(r, 405)["code"] == "method_not_allowed" and "POST" in r.headers["allow"]
    paths = client.get("/openapi.json").json()["paths"]
    post = paths["/v1/decisions"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("DecisionRequest")
    assert any(p["name"] == "idempotency-key" for p in post["parameters"])


def test_the_strictly_validated_body_is_what_lax_validation_gives() -> None:
    """The direct route uses the value the strict JSON check validated instead of parsing again; for a
    body strict mode accepts, that is the model FastAPI's lax validation of the same JSON builds."""
    from callvet.api.routes.decisions import DecisionRequest
    from pydantic import TypeAdapter

    strict = TypeAdapter(DecisionRequest)
    inv = {"questionnaire": {"verdict": "inconclusive", "risk_score": 0.75, "reasons": []}}
    bodies = [{"application": example()}, {"application": example(), "investigation": inv},
              {"application": example(), "investigation": {"questionnaire": {**inv["questionnaire"],
                                                                              "risk_score": 1}}}]
    for body in bodies:
        raw = json.dumps(body, ensure_ascii=False).encode()
        a, b = strict.validate_json(raw, strict=True), DecisionRequest.model_validate(json.loads(raw))
        assert a == b and a.model_dump_json() == b.model_dump_json()


def test_the_direct_answer_is_the_documented_routes_answer(api: Api, monkeypatch: Any) -> None:
    client, h = api
    fast = _fast(client)
    body = {"application": example(),
            "investigation": {"questionnaire": {"verdict": "pass", "risk_score": 0.25, "reasons": []}}}
    direct = client.post("/v1/decisions", headers=h["robot"], json=body)
    monkeypatch.setattr(FastRoute, "_parse", lambda self, scope, raw: None)  # every request handed on
    handed = fast.handed_back
    documented = client.post("/v1/decisions", headers=h["robot"], json=body)
    assert fast.handed_back == handed + 1
    assert direct.status_code == documented.status_code == 200
    assert direct.headers["content-type"] == documented.headers["content-type"]
    a, b = direct.json(), documented.json()
    assert a.pop("decision_id") != b.pop("decision_id")
    assert a == b and list(direct.json()) == list(documented.json())
