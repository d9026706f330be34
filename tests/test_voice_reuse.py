"""Voice reuse across applicants, end to end: a real uvicorn server, real WebSocket call clients, real
speech (espeak-ng voices), the real engine; plus enrol-from-call, retention purge and deletion, audited."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from callserver import ServerThread
from callvet.api.app import create_app
from callvet.api.routes.calls import callprint_store
from callvet.core import auth
from callvet.core.db import Database, utcnow
from callvet.core.settings import Settings
from callvet.sim.calls import stream_call
from callvet.voice.callprints import Applicant, CallPrintRecords
from fastapi.testclient import TestClient
from speech import espeak

TEXT_A = ("I bought the card last spring and I use it for groceries and fuel every week. My employer is a "
          "logistics company and I have worked there for six years.")
TEXT_B = ("My account was opened at the branch on the high street. I usually pay my bills on the first of "
          "every month and I travel a lot for work.")
RING = "en-us+m3"
OTHER = "en-us+f2"


def speech8k(text: str, voice: str) -> np.ndarray:
    x = espeak(text, voice, sample_rate=8000)
    return np.concatenate([np.zeros(4000, np.float32), x, np.zeros(8000, np.float32)])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d: Path = tmp_path_factory.mktemp("reuse")
    settings = Settings(data_dir=d, database_url=f"sqlite:///{d / 'callvet.db'}")
    db = Database(settings.database_url)
    db.create_schema()
    app = create_app(settings, db)
    keys = {r.value: auth.create_key(db, r.value, f"t-{r.value}") for r in auth.Role}
    with ServerThread(app) as srv, TestClient(app) as client:
        yield {"srv": srv, "keys": keys, "client": client, "db": db, "app": app, "calls": {}}


def _hdr(env: dict[str, Any], role: str = "analyst") -> dict[str, str]:
    return {"Authorization": f"Bearer {env['keys'][role]}"}


def _call(env: dict[str, Any], text: str, voice: str, params: dict[str, str]) -> Any:
    return asyncio.run(stream_call(env["srv"].url("/v1/calls/stream"), speech8k(text, voice), 8000,
                                   token=env["keys"]["robot"], params=params))


def _record(env: dict[str, Any], call_id: str) -> dict[str, Any]:
    r = env["client"].get(f"/v1/calls/{call_id}", headers=_hdr(env))
    assert r.status_code == 200, r.text
    return r.json()


def test_same_voice_for_two_applicants_raises_voice_reuse(env: dict[str, Any]) -> None:
    first = _call(env, TEXT_A, RING, {"applicant_id": "appl-1", "application_id": "app-1"})
    v1 = first.of("callvet.voiceprint")
    assert v1 and v1[-1]["voice_reuse"] is False
    assert v1[-1]["applicant"]["applicant_id"] == "appl-1"
    assert _record(env, first.call_id)["voiceprint_store"]["applicant_id"] == "appl-1"

    second = _call(env, TEXT_B, RING, {"case_id": "case-2", "application_id": "app-2"})
    v2 = second.of("callvet.voiceprint")
    assert v2 and v2[-1]["voice_reuse"] is True, str({k: v for k, v in v2[-1].items() if "reuse" in k})
    hit = v2[-1]["reuse_matches"][0]
    assert hit["call_id"] == first.call_id and hit["applicant_id"] == "appl-1"
    assert hit["score"] >= v2[-1]["reuse_threshold"]
    rec = _record(env, second.call_id)
    assert rec["voice_reuse"] is True
    assert first.call_id in {m["call_id"] for m in rec["reuse_matches"]}
    assert rec["voiceprint_store"]["case_id"] == "case-2" and rec["voiceprint_store"]["voice_reuse"] is True
    env["calls"].update(first=first.call_id, second=second.call_id)


def test_different_voice_raises_no_voice_reuse(env: dict[str, Any]) -> None:
    other = _call(env, TEXT_A, OTHER, {"applicant_id": "appl-3"})
    verdicts = other.of("callvet.voiceprint")
    assert verdicts and not any(v["voice_reuse"] for v in verdicts), verdicts
    assert verdicts[-1]["reuse_searched"] >= 2
    assert _record(env, other.call_id)["voice_reuse"] is False
    env["calls"]["other"] = other.call_id


def test_same_applicant_is_not_reuse(env: dict[str, Any]) -> None:
    """A second call of applicant appl-1 (same voice) matches only its own earlier call: not reuse;
    it still finds the ring's other applicant (case-2)."""
    store = callprint_store(env["app"].state.ctx)
    first = env["calls"]["first"]
    again = store.search(store.voiceprint(first), Applicant(applicant_id="appl-1"), exclude_call_id="x")
    assert first not in {m["call_id"] for m in again.matches}
    assert env["calls"]["second"] in {m["call_id"] for m in again.matches}
    only_mine = store.search(store.voiceprint(first), Applicant(applicant_id="appl-1", case_id="case-2"))
    assert only_mine.voice_reuse is False


def test_enrol_blacklist_identity_from_a_call(env: dict[str, Any]) -> None:
    c = env["client"]
    ident = c.post("/v1/blacklist/identities", json={"label": "ring voice", "notes": "from calls"},
                   headers=_hdr(env)).json()
    url = f"/v1/blacklist/identities/{ident['id']}/samples"
    r = c.post(url, json={"call_id": env["calls"]["first"]}, headers=_hdr(env))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["from_call_id"] == env["calls"]["first"] and body["net_speech_s"] >= 3.0
    assert c.post(url, json={"call_id": env["calls"]["first"]}, headers=_hdr(env)).status_code == 409
    missing = c.post(url, json={"call_id": "nope"}, headers=_hdr(env))
    assert missing.status_code == 404 and missing.json()["code"] == "call_print_not_found"
    assert c.post(url, json={"call": 1}, headers=_hdr(env)).status_code == 422
    assert c.post(url, json={"call_id": env["calls"]["first"]}, headers=_hdr(env, "robot")).status_code == 403
    audit = c.get(f"/v1/audit?target_type=blacklist_identity&target_id={ident['id']}",
                  headers=_hdr(env, "auditor")).json()
    rows = audit.get("entries", audit.get("audit", audit)) if isinstance(audit, dict) else audit
    assert any((row.get("details") or {}).get("from_call_id") == env["calls"]["first"] for row in rows)
    # The enrolled call print now finds the ring voice's later call on the blacklist.
    bl_hit = c.get(f"/v1/blacklist/identities/{ident['id']}", headers=_hdr(env)).json()
    assert bl_hit["samples"] == 1


def test_delete_call_voiceprint_is_audited_and_leaves_search(env: dict[str, Any]) -> None:
    c = env["client"]
    second = env["calls"]["second"]
    assert c.delete(f"/v1/calls/{second}/voiceprint", headers=_hdr(env)).status_code == 422
    r = c.delete(f"/v1/calls/{second}/voiceprint?reason=erasure+request+7", headers=_hdr(env))
    assert r.status_code == 200, r.text
    assert _record(env, second)["voiceprint_store"] is None
    store = callprint_store(env["app"].state.ctx)
    res = store.search(store.voiceprint(env["calls"]["first"]), Applicant(applicant_id="appl-1"))
    assert second not in {m["call_id"] for m in res.matches}
    assert c.delete(f"/v1/calls/{second}/voiceprint?reason=again", headers=_hdr(env)).status_code == 404
    audit = c.get(f"/v1/audit?target_type=call_print&target_id={second}", headers=_hdr(env, "auditor")).json()
    rows = audit.get("entries", audit.get("audit", audit)) if isinstance(audit, dict) else audit
    actions = [row["action"] for row in rows]
    assert "callprint.delete" in actions and "callprint.store" in actions
    # Deleting the call record takes its print with it.
    other = env["calls"]["other"]
    assert c.delete(f"/v1/calls/{other}?reason=test", headers=_hdr(env)).status_code == 204
    assert CallPrintRecords(env["db"]).get(other) is None


def test_retention_purge(env: dict[str, Any]) -> None:
    store = callprint_store(env["app"].state.ctx)
    first = env["calls"]["first"]
    assert store.get(first) is not None
    assert store.purge()["purged"] == 0
    later = utcnow() + timedelta(days=store.retention_days + 1)
    out = store.purge(now=later)
    assert out["purged"] >= 1
    assert store.get(first) is None and len(store.index) == 0
    audit = env["client"].get("/v1/audit?target_type=call_print&target_id=*",
                              headers=_hdr(env, "auditor")).json()
    rows = audit.get("entries", audit.get("audit", audit)) if isinstance(audit, dict) else audit
    purge = [row for row in rows if row["action"] == "callprint.purge"]
    assert purge and first in purge[-1]["details"]["call_ids"]


def test_applicant_from_start_parameters() -> None:
    a = Applicant.from_params({"applicantId": "p1", "case_id": "c1"}, "app-9")
    assert (a.applicant_id, a.case_id, a.application_id) == ("p1", "c1", "app-9")
    assert a.same_as(Applicant(case_id="c1")) and not a.same_as(Applicant(applicant_id="p2"))
    unknown = Applicant.from_params({})
    assert not unknown.known and not unknown.same_as(Applicant()) and not unknown.same_as(a)
