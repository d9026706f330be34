from __future__ import annotations

import pytest
from callvet.core import audit
from callvet.core.db import Database
from callvet.core.errors import InvalidInput, NotFound
from callvet.voice.call.frames import StartFrame
from callvet.voice.call.state import CallState
from callvet.voice.call.store import CallStore


def _start() -> StartFrame:
    return StartFrame("twilio", "MZ1", "CA1", 8000, "mulaw",
                      params={"application_id": "app-9", "language": "en"})


def test_call_record_lifecycle(db: Database) -> None:
    store = CallStore(db)
    store.create("c1", "twilio", "robot:r1")
    store.start("c1", _start())
    store.set_state("c1", CallState.STREAMING)
    store.add_event("c1", "verdict", {"alarm": False, "net_speech_s": 3.0, "matches": []}, t_s=3.5)
    store.add_event("c1", "verdict", {"alarm": True, "net_speech_s": 5.0, "matches": [{"identity_id": 1}]},
                    t_s=5.5)
    store.add_event("c1", "verdict", {"alarm": False, "net_speech_s": 9.0, "matches": []}, t_s=9.5)
    store.add_event("c1", "error", {"code": "bad_json"}, t_s=1.0)
    store.end("c1", CallState.STOPPED, reason="stop", close_code=None, audio_s=10.0, net_speech_s=9.0,
              stats={"frames": 500})
    rec = store.get("c1")
    assert rec["state"] == "stopped" and rec["stream_id"] == "MZ1" and rec["application_id"] == "app-9"
    assert rec["verdicts"] == 3 and rec["errors"] == 1 and rec["alarm"] is False and rec["alarm_ever"] is True
    assert [e["kind"] for e in rec["events"]] == ["verdict", "verdict", "verdict", "error"]
    assert rec["events"][1]["data"]["matches"] == [{"identity_id": 1}] and rec["stats"] == {"frames": 500}
    store.create("c2", "fork", "robot:r1")
    assert [c["id"] for c in store.list(alarm=True)] == ["c1"]
    assert [c["id"] for c in store.list(alarm=False)] == ["c2"]
    assert [c["id"] for c in store.list(application_id="app-9")] == ["c1"]
    assert [e["action"] for e in audit.query(db, target_id="c1")] == ["call.start"]


def test_delete_needs_reason_and_is_audited(db: Database) -> None:
    store = CallStore(db)
    store.create("c1", "twilio", "robot:r1")
    store.add_event("c1", "error", {"code": "x"})
    with pytest.raises(InvalidInput):
        store.delete("c1", "analyst:a", " ")
    store.delete("c1", "analyst:a", "retention expired")
    with pytest.raises(NotFound):
        store.get("c1")
    with pytest.raises(NotFound):
        store.delete("c1", "analyst:a", "again")
    (row,) = audit.query(db, target_id="c1", action="call.delete")
    assert row["reason"] == "retention expired"
    with pytest.raises(InvalidInput):
        store.list(limit=0)
