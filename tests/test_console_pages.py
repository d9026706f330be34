"""Console pages over HTTP without a browser: each role's actions reach the same services as REST,
audited under the person's name, and bad input comes back on the page; the alarm hub and its event
stream on their own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from callvet.console.live import AlarmHub, AlarmObserver, alarm_event, poll_stream, sse_stream
from callvet.core import audit
from callvet.core.db import Database
from callvet.decision import store as policy_store
from callvet.voice.call.observer import CallInfo
from consolesite import console_app, csrf, scripted_workflow, signed_in

APP = json.loads((Path(__file__).parent / "data" / "application.example.json").read_text())

PEOPLE = {"ana": "analyst", "bob": "approver", "rita": "risk_officer"}


@pytest.fixture
def site(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    app = console_app(db, tmp_path, monkeypatch, PEOPLE)
    yield {"app": app, "db": db, "rt": scripted_workflow(app, db)}


def _client(site: dict[str, Any], name: str) -> Any:
    return signed_in(site["app"], name)


def _post(client: Any, page: str, url: str, data: dict[str, Any], **kw: Any) -> Any:
    return client.post(url, data={"csrf": csrf(client.get(page).text), **data}, follow_redirects=False, **kw)


def test_analyst_creates_and_deletes_an_identity_with_a_reason(site: dict[str, Any]) -> None:
    ana = _client(site, "ana")
    r = _post(ana, "/console/blacklist", "/console/blacklist/identities", {"label": "", "notes": ""})
    assert r.status_code == 422 and 'data-testid="error"' in r.text
    r = _post(ana, "/console/blacklist", "/console/blacklist/identities",
              {"label": "ring <b>7</b>", "notes": "from case 2026-7"})
    assert r.status_code == 303
    page = r.headers["location"]
    shown = ana.get(page).text
    assert "ring &lt;b&gt;7&lt;/b&gt;" in shown and "<b>7</b>" not in shown  # escaped, never markup
    ident = page.rsplit("/", 1)[1]
    r = _post(ana, page, f"{page}/samples", {})
    assert r.status_code == 422 and "upload" in r.text
    assert _post(ana, page, f"{page}/delete", {"reason": " "}).status_code == 422
    r = _post(ana, page, f"{page}/delete", {"reason": "duplicate of ring 3"})
    assert r.status_code == 303
    entry = audit.query(site["db"], action="blacklist.identity.delete")[0]
    assert entry["actor"] == "analyst:user:ana" and entry["reason"] == "duplicate of ring 3"
    assert entry["target_id"] == ident
    assert audit.query(site["db"], action="blacklist.identity.create")[0]["actor"] == "analyst:user:ana"


def test_risk_officer_proposes_rejects_and_sees_broken_graphs_refused(site: dict[str, Any]) -> None:
    rita = _client(site, "rita")
    edit = "/console/policies/prescreen/tables"
    page = rita.get(edit)
    assert page.status_code == 200 and 'id="graph-json"' in page.text
    graph = policy_store.shipped_graph("prescreen")
    r = _post(rita, edit, "/console/policies/prescreen/propose", {"graph": json.dumps(graph), "note": ""})
    assert r.status_code == 422 and "note" in r.text
    assert _post(rita, edit, "/console/policies/prescreen/propose",
                 {"graph": "{not json", "note": "x"}).status_code == 422
    broken = json.loads(json.dumps(graph))
    table = next(n for n in broken["nodes"] if n["type"] == "decisionTableNode")
    outcome = table["content"]["outputs"][0]["id"]
    table["content"]["rules"][-1][outcome] = '"maybe"'  # the catch-all rule: not an outcome the engine has
    r = _post(rita, edit, "/console/policies/prescreen/propose", {"graph": json.dumps(broken), "note": "x"})
    assert r.status_code == 422 and 'data-testid="error"' in r.text and "maybe" in r.text
    table["content"]["rules"][-1][outcome] = '"approve"'
    assert [v["version"] for v in policy_store.list_versions(site["db"], "prescreen")] == [1]
    table["content"]["rules"][0][table["content"]["inputs"][0]["id"]] = "< 19"
    r = _post(rita, edit, "/console/policies/prescreen/propose",
              {"graph": json.dumps(broken), "note": "age 19"})
    assert r.status_code == 303
    v2 = policy_store.get_version(site["db"], "prescreen", 2)
    assert v2["status"] == "proposed" and v2["created_by"] == "risk_officer:user:rita"
    r = _post(rita, "/console/policies", "/console/policies/prescreen/versions/2/activate", {})
    assert r.status_code == 403  # a risk officer is not an approver
    r = _post(rita, "/console/policies", "/console/policies/prescreen/versions/2/reject",
              {"reason": "wrong committee"})
    assert r.status_code == 303
    assert policy_store.get_version(site["db"], "prescreen", 2)["status"] == "rejected"
    bob = _client(site, "bob")
    r = _post(bob, "/console/policies", "/console/policies/prescreen/versions/2/activate", {})
    assert r.status_code == 409  # rejected versions cannot become active


def test_bpmn_upload_and_activation(site: dict[str, Any]) -> None:
    from callvet.workflow.definitions import PROCESSES_DIR

    rita = _client(site, "rita")
    xml = (PROCESSES_DIR / "card_issuance.bpmn").read_text().replace("Credit card issuance", "Card v2")
    token = csrf(rita.get("/console/processes").text)
    r = rita.post("/console/processes/upload", data={"csrf": token},
                  files={"bpmn": ("card.bpmn", b"<definitions>nope", "application/xml")})
    assert r.status_code == 422 and 'data-testid="bpmn-error"' in r.text
    r = rita.post("/console/processes/upload", data={"csrf": token},
                  files={"bpmn": ("card.bpmn", xml.encode(), "application/xml")}, follow_redirects=False)
    assert r.status_code == 303
    r = _post(rita, "/console/processes", "/console/processes/card_issuance/versions/2/activate", {})
    assert r.status_code == 303
    active = [d.version for d in site["rt"].definitions.list()
              if d.process_key == "card_issuance" and d.active]
    assert active == [2]
    entry = audit.query(site["db"], target_type="wf_definition")[0]
    assert entry["actor"] == "risk_officer:user:rita"


def test_approver_completion_is_validated_by_the_tasks_form(site: dict[str, Any]) -> None:
    rt = site["rt"]
    inst = rt.start("card_issuance", {"application": APP}, actor="test")
    rt.deliver_message(inst["instance_id"], "investigation_result",
                       {"investigation": {"questionnaire": {"verdict": "inconclusive"}}}, actor="test")
    task = rt.board.list_open(role="approver")[0]
    bob = _client(site, "bob")
    page = f"/console/tasks/{task['task_id']}"
    url = f"{page}/complete"
    r = _post(bob, page, url, {"review_decision": "approve", "approved_amount": "lots"})
    assert r.status_code == 422 and "approved_amount" in r.text
    r = _post(bob, page, url, {"review_decision": "maybe"})
    assert r.status_code == 422
    r = _post(bob, page, url, {"review_decision": "approve", "approved_amount": "20000",
                               "documents": "id_card, income_proof"})
    assert r.status_code == 303
    summary = rt.summary(task["instance_id"], with_events=True)
    assert summary["data"]["review_decision"] == "approve" and summary["data"]["reviewed_by"] == "bob"
    assert audit.query(site["db"], target_type="wf_task")[0]["actor"] == "approver:user:bob"
    assert _client(site, "ana").get(page).status_code == 403


def _info(call_id: str = "c1") -> CallInfo:
    return CallInfo(call_id=call_id, protocol="twilio", stream_id="s", call_sid="cs", application_id="APP-9",
                    language="en", sample_rate=8000)


VERDICT = {"alarm": True, "review": False, "threshold": 0.5, "net_speech_s": 4.0,
           "matches": [{"identity_id": 3, "label": "ring-a", "score": 0.9}],
           "spoof": {"score": None, "flag": None, "kind": None, "error": "pending"}}


def test_alarm_events_carry_no_audio_and_only_alarm_or_review_tiers() -> None:
    ev = alarm_event(_info(), VERDICT)
    assert ev is not None and ev["tier"] == "alarm" and ev["label"] == "ring-a"
    assert ev["application_id"] == "APP-9"
    assert set(ev) == {"call_id", "application_id", "tier", "identity_id", "label", "score", "threshold",
                       "net_speech_s", "spoof_flag", "spoof_kind", "at"}
    assert alarm_event(_info(), {**VERDICT, "alarm": False, "review": True})["tier"] == "review"  # type: ignore[index]
    assert alarm_event(_info(), {**VERDICT, "alarm": False}) is None


def test_hub_streams_recent_then_live_alarms_and_ends_with_the_session() -> None:
    async def scenario() -> list[str]:
        hub = AlarmHub(keep=2)
        obs = AlarmObserver(hub)
        obs.on_verdict(_info("old"), VERDICT)
        signed_in = [True]

        async def still() -> bool:
            return signed_in[0]

        stream = sse_stream(hub, still, heartbeat_s=0.05)
        frames = [(await anext(stream)).decode()]
        obs.on_verdict(_info("new"), VERDICT)
        obs.on_verdict(_info("quiet"), {**VERDICT, "alarm": False})
        frames.append((await anext(stream)).decode())
        frames.append((await anext(stream)).decode())  # keep-alive after the quiet heartbeat
        signed_in[0] = False
        frames.append((await anext(stream)).decode())
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        assert hub.subscribers == 0
        return frames

    hello, alarm, keep, bye = asyncio.run(scenario())
    assert "event: hello" in hello and '"call_id": "old"' in hello
    assert alarm.startswith("event: alarm") and '"call_id": "new"' in alarm
    assert keep == ": keep-alive\n\n" and "event: bye" in bye


def test_poll_stream_sends_a_snapshot_only_when_it_changes() -> None:
    async def scenario() -> list[str]:
        states = iter([{"tasks": [1]}, {"tasks": [1]}, {"tasks": [1, 2]}])
        alive = iter([True, True, True, False])

        async def fetch() -> dict[str, Any]:
            return next(states)

        async def still() -> bool:
            return next(alive)

        return [f.decode() async for f in poll_stream(fetch, still, interval_s=0.001, heartbeat_s=100)]

    frames = asyncio.run(scenario())
    snapshots = [f for f in frames if f.startswith("event: snapshot")]
    assert len(snapshots) == 2 and '"tasks": [1, 2]' in snapshots[1] and "event: bye" in frames[-1]


class _FlagsEverything:
    """Stands in for the countermeasure (tested in test_voice_spoof) so the page's override flow can be
    driven: every recording is flagged as a replay."""

    def score(self, _speech: Any) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(to_dict=lambda: {"score": 3.2, "flag": True, "kind": "replay"})


def test_a_flagged_recording_needs_an_override_with_a_reason(site: dict[str, Any]) -> None:
    from speech import espeak, to_wav_bytes

    site["app"].state.ctx.override("spoof", _FlagsEverything())
    ana = _client(site, "ana")
    r = _post(ana, "/console/blacklist", "/console/blacklist/identities", {"label": "replayer"})
    page = r.headers["location"]
    wav = to_wav_bytes(espeak("My account was opened at the branch on the high street last year, "
                              "and I pay my bills on the first of every month.", "en-us+m5"), 16000)

    def upload(**fields: str) -> Any:
        token = csrf(ana.get(page).text)
        return ana.post(f"{page}/samples", data={"csrf": token, **fields},
                        files={"audio": ("s.wav", wav, "audio/wav")}, follow_redirects=False)

    r = upload()
    assert r.status_code == 422 and 'data-testid="spoof-override"' in r.text
    assert audit.query(site["db"], action="blacklist.sample.spoof_refused")[0]["actor"] == "analyst:user:ana"
    assert upload(override_spoof="on").status_code == 422  # an override needs a reason
    r = upload(override_spoof="on", override_reason="known replay used by the ring; kept as evidence")
    assert r.status_code == 201 and 'data-testid="enrolled"' in r.text
    entry = audit.query(site["db"], action="blacklist.sample.spoof_override")[0]
    assert entry["actor"] == "analyst:user:ana" and "kept as evidence" in entry["reason"]
