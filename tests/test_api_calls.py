"""The call server end to end: a real uvicorn server on loopback, real WebSocket clients, real speech,
the real voiceprint engine and blacklist (one espeak voice enrolled)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websockets
from callserver import ServerThread
from callvet.api.app import create_app
from callvet.core import auth
from callvet.core.db import Database
from callvet.core.settings import Settings
from callvet.sim.calls import mulaw_encode, stream_call
from fastapi.testclient import TestClient
from speech import espeak, to_wav_bytes

ENROL = ("My account was opened at the branch on the high street. I usually pay my bills on the first of "
         "every month and I travel a lot for work.")
PROBE = ("I bought the card last spring and I use it for groceries and fuel every week. My employer is a "
         "logistics company.")
FRAUDSTER = "en-us+m3"
OTHER = "en-us+f2"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def speech8k(text: str, voice: str, lead_s: float = 0.5, tail_s: float = 1.0) -> np.ndarray:
    x = espeak(text, voice, sample_rate=8000)
    return np.concatenate([np.zeros(int(lead_s * 8000), np.float32), x,
                           np.zeros(int(tail_s * 8000), np.float32)])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d: Path = tmp_path_factory.mktemp("calls")
    settings = Settings(data_dir=d, database_url=f"sqlite:///{d / 'callvet.db'}")
    db = Database(settings.database_url)
    db.create_schema()
    app = create_app(settings, db)
    keys = {r.value: auth.create_key(db, r.value, f"t-{r.value}") for r in auth.Role}
    bl = app.state.ctx.blacklist
    ident = bl.create_identity("fraudster-m3", "test voice", "test")
    bl.add_sample(ident["id"], to_wav_bytes(espeak(ENROL, FRAUDSTER), 16000), "test")
    with ServerThread(app) as srv, TestClient(app) as client:
        yield {"srv": srv, "keys": keys, "client": client, "identity": ident["id"], "db": db}


def _hdr(env: dict[str, Any], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {env['keys'][role]}"}


def _record(env: dict[str, Any], call_id: str, role: str = "analyst") -> dict[str, Any]:
    r = env["client"].get(f"/v1/calls/{call_id}", headers=_hdr(env, role))
    assert r.status_code == 200, r.text
    return r.json()


def test_enrolled_voice_raises_alarm_and_is_recorded(env: dict[str, Any]) -> None:
    res = run(stream_call(env["srv"].url("/v1/calls/stream"), speech8k(PROBE, FRAUDSTER), 8000,
                          token=env["keys"]["robot"], params={"application_id": "app-42", "language": "en"}))
    assert res.close_code == 1000
    verdicts = res.of("callvet.voiceprint")
    assert verdicts and verdicts[-1]["alarm"] is True
    assert verdicts[-1]["matches"][0]["identity_id"] == env["identity"]
    assert all(v["net_speech_s"] >= 1.5 for v in verdicts)
    assert all(isinstance(v["review"], bool) and (v["tiers"] is None
                                                  or v["tiers"]["alarm"]["threshold"] == v["threshold"])
               for v in verdicts)
    assert res.marks == ["end"]
    rec = _record(env, res.call_id)
    assert rec["state"] == "stopped" and rec["protocol"] == "twilio"
    assert rec["application_id"] == "app-42" and rec["language"] == "en"
    assert rec["alarm_ever"] is True and rec["net_speech_s"] >= 3.0
    kinds = [e["kind"] for e in rec["events"]]
    assert "verdict" in kinds and "answer" in kinds
    assert _record(env, res.call_id, "auditor")["id"] == res.call_id
    assert env["client"].get(f"/v1/calls/{res.call_id}", headers=_hdr(env, "approver")).status_code == 403


def test_other_voice_raises_no_alarm(env: dict[str, Any]) -> None:
    res = run(stream_call(env["srv"].url("/v1/calls/stream"), speech8k(PROBE, OTHER), 8000,
                          token=env["keys"]["robot"], params={"application_id": "app-7"}))
    verdicts = res.of("callvet.voiceprint")
    assert verdicts and not any(v["alarm"] for v in verdicts)
    assert verdicts[0]["net_speech_s"] <= 5.0
    rec = _record(env, res.call_id)
    assert rec["alarm_ever"] is False
    listed = env["client"].get("/v1/calls?alarm=true", headers=_hdr(env, "analyst")).json()["calls"]
    assert res.call_id not in {c["id"] for c in listed}
    assert all(c["alarm_ever"] for c in listed)
    unlisted = env["client"].get("/v1/calls?alarm=false", headers=_hdr(env, "analyst")).json()["calls"]
    assert res.call_id in {c["id"] for c in unlisted}


def test_alarm_list_contains_alarm_calls(env: dict[str, Any]) -> None:
    res = run(stream_call(env["srv"].url("/v1/calls/stream"), speech8k(PROBE, FRAUDSTER), 8000,
                          token=env["keys"]["robot"]))
    listed = env["client"].get("/v1/calls?alarm=true", headers=_hdr(env, "analyst")).json()["calls"]
    assert res.call_id in {c["id"] for c in listed}
    assert env["client"].get("/v1/calls?alarm=true", headers=_hdr(env, "robot")).status_code == 403


def test_fork_protocol_16k_pcm(env: dict[str, Any]) -> None:
    x = espeak(PROBE, FRAUDSTER, sample_rate=16000)
    x = np.concatenate([np.zeros(8000, np.float32), x, np.zeros(16000, np.float32)])
    res = run(stream_call(env["srv"].url("/v1/calls/fork"), x, 16000, protocol="fork",
                          token=env["keys"]["robot"], params={"application_id": "app-fork"}))
    assert res.close_code == 1000
    assert res.of("callvet.voiceprint")[-1]["alarm"] is True
    rec = _record(env, res.call_id)
    assert rec["protocol"] == "fork" and rec["application_id"] == "app-fork"


def test_out_of_order_frames_are_reordered(env: dict[str, Any]) -> None:
    res = run(stream_call(env["srv"].url("/v1/calls/stream"), speech8k(PROBE, FRAUDSTER), 8000,
                          token=env["keys"]["robot"], reorder=5, seed=3))
    assert res.of("callvet.voiceprint")[-1]["alarm"] is True
    stats = _record(env, res.call_id)["stats"]
    assert stats["reordered"] > 50 and stats["lost"] == 0 and stats["late"] == 0


async def _raw(url: str, messages: list[str | bytes], *, token: str | None,
               wait_close: bool = True) -> tuple[list[dict[str, Any]], int | None]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    events: list[dict[str, Any]] = []
    async with websockets.connect(url, additional_headers=headers) as ws:
        for m in messages:
            await ws.send(m)

        async def read() -> None:
            try:
                async for msg in ws:
                    events.append(json.loads(msg))
            except websockets.ConnectionClosed:
                pass

        await asyncio.wait_for(read(), 30)
        return events, ws.close_code


def _start(rate: int = 8000, encoding: str = "audio/x-mulaw") -> str:
    return json.dumps({"event": "start", "streamSid": "MZ1", "start": {
        "streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound"], "customParameters": {},
        "mediaFormat": {"encoding": encoding, "sampleRate": rate, "channels": 1}}})


def _media(chunk: int, payload: str | None = None) -> str:
    if payload is None:
        payload = base64.b64encode(mulaw_encode(np.zeros(160, np.float32))).decode()
    return json.dumps({"event": "media", "streamSid": "MZ1",
                       "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(20 * chunk),
                                 "payload": payload}})


STOP = json.dumps({"event": "stop", "streamSid": "MZ1", "stop": {}})


def test_auth_rejected_with_1008_before_audio(env: dict[str, Any]) -> None:
    url = env["srv"].url("/v1/calls/stream")
    events, code = run(_raw(url, [], token=None))
    assert code == 1008 and events[0]["code"] == "unauthenticated"
    events, code = run(_raw(url, [], token=env["keys"]["analyst"]))
    assert code == 1008 and events[0]["code"] == "forbidden"
    events, code = run(_raw(url + "?token=cv_bad_key", [], token=None))
    assert code == 1008
    events, code = run(_raw(url + f"?token={env['keys']['robot']}", [_start(), _media(1), STOP], token=None))
    assert code == 1000 and events[0]["event"] == "callvet.started"


def test_robot_key_in_twilio_custom_parameters_is_accepted_and_never_kept(env: dict[str, Any]) -> None:
    """Twilio's <Stream> cannot set headers: the key rides in customParameters.token (issue 9), is
    taken out before the call server sees the frames, and appears nowhere in the call record."""
    key = env["keys"]["robot"]
    start = json.loads(_start())
    start["start"]["customParameters"] = {"token": key, "application_id": "app-cp"}
    events, code = run(_raw(env["srv"].url("/v1/calls/stream"), [json.dumps(start), _media(1), STOP],
                            token=None))
    assert code == 1000 and events[0]["event"] == "callvet.started", events
    rec = _record(env, events[0]["call_id"])
    assert rec["application_id"] == "app-cp"
    assert key not in json.dumps(rec) and key.split("_")[2] not in json.dumps(rec)
    start["start"]["customParameters"] = {"token": env["keys"]["analyst"]}
    events, code = run(_raw(env["srv"].url("/v1/calls/stream"), [json.dumps(start)], token=None))
    assert code == 1008 and events[0]["code"] == "forbidden"


def test_recoverable_bad_input_is_reported_and_call_goes_on(env: dict[str, Any]) -> None:
    msgs: list[str | bytes] = [
        _media(1),  # media before start
        "{not json", json.dumps([1, 2]), json.dumps({"event": "bogus"}), _start(),
        _media(1, payload="@@not-base64@@"), json.dumps({"event": "mark"}),
        _media(2), _media(3), STOP,
    ]
    events, code = run(_raw(env["srv"].url("/v1/calls/stream"), msgs, token=env["keys"]["robot"]))
    assert code == 1000
    codes = [e["code"] for e in events if e["event"] == "callvet.error"]
    assert codes == ["media_before_start", "bad_json", "bad_json", "unknown_event", "bad_payload", "bad_mark"]
    started = next(e for e in events if e["event"] == "callvet.started")
    rec = _record(env, started["call_id"])
    assert rec["state"] == "stopped" and rec["errors"] == 6
    assert rec["stats"]["frames"] == 2


@pytest.mark.parametrize(
    ("path", "msgs", "close", "code"),
    [
        ("/v1/calls/stream", [_start(16000)], 1003, "unsupported_format"),
        ("/v1/calls/stream", [_start(8000, "audio/x-l16")], 1003, "unsupported_format"),
        ("/v1/calls/stream", [b"\x00\x01"], 1003, "unsupported_data"),
        ("/v1/calls/stream", [_start(), _media(1, base64.b64encode(bytes(16000)).decode())], 1009,
         "frame_too_large"),
        ("/v1/calls/stream", [_start(), _start()], 1008, "duplicate_start"),
        ("/v1/calls/stream", [json.dumps({"event": "start"})], 1007, "bad_start"),
        ("/v1/calls/stream", ["{"] * 25, 1008, "too_many_errors"),
        ("/v1/calls/fork", [json.dumps({"sampleRate": 44100})], 1003, "unsupported_format"),
        ("/v1/calls/fork", [json.dumps({"sampleRate": 16000}), bytes(64000)], 1009, "frame_too_large"),
    ],
)
def test_fatal_bad_input_closes_with_reason(env: dict[str, Any], path: str, msgs: list[str | bytes],
                                             close: int, code: str) -> None:
    events, got = run(_raw(env["srv"].url(path), msgs, token=env["keys"]["robot"]))
    assert got == close
    errors = [e for e in events if e["event"] == "callvet.error"]
    assert errors[-1]["code"] == code and errors[-1]["close_code"] == close


def test_fork_odd_bytes_and_unknown_text_are_recoverable(env: dict[str, Any]) -> None:
    msgs: list[str | bytes] = [json.dumps({"sampleRate": 8000, "application_id": "a-1"}), b"\x00\x01\x02",
                               json.dumps({"event": "nope"}), bytes(320), json.dumps({"event": "stop"})]
    events, code = run(_raw(env["srv"].url("/v1/calls/fork"), msgs, token=env["keys"]["robot"]))
    assert code == 1000
    assert [e["code"] for e in events if e["event"] == "callvet.error"] == ["bad_payload", "unknown_event"]


def test_abrupt_disconnect_keeps_the_record(env: dict[str, Any]) -> None:
    x = speech8k(PROBE + " " + PROBE, FRAUDSTER)

    async def go() -> dict[str, Any]:
        await stream_call(env["srv"].url("/v1/calls/stream"), x, 8000, token=env["keys"]["robot"],
                          disconnect_after_s=7.0, speed=5.0, params={"application_id": "app-abrupt"})
        for _ in range(400):
            r = env["client"].get("/v1/calls", params={"application_id": "app-abrupt"},
                                  headers=_hdr(env, "analyst"))
            calls = r.json()["calls"]
            if calls and calls[0]["ended_at"]:
                return calls[0]
            await asyncio.sleep(0.05)
        raise AssertionError("the cut-off call was never closed")

    rec = _record(env, run(go())["id"])
    assert rec["state"] == "stopped" and rec["end_reason"] == "disconnected"
    assert 6.5 <= rec["audio_s"] <= 7.1  # what was read before the connection reset
    assert rec["net_speech_s"] >= 3.0 and rec["alarm_ever"] is True
    assert any(e["kind"] == "verdict" for e in rec["events"])


def test_delete_call_is_audited(env: dict[str, Any]) -> None:
    events, _ = run(_raw(env["srv"].url("/v1/calls/stream"), [_start(), _media(1), STOP],
                         token=env["keys"]["robot"]))
    call_id = events[0]["call_id"]
    c = env["client"]
    r = c.delete(f"/v1/calls/{call_id}", headers=_hdr(env, "robot"), params={"reason": "x"})
    assert r.status_code == 403
    assert c.delete(f"/v1/calls/{call_id}", headers=_hdr(env, "analyst"),
                    params={"reason": "retention"}).status_code == 204
    assert c.get(f"/v1/calls/{call_id}", headers=_hdr(env, "analyst")).status_code == 404
    audit = c.get("/v1/audit", headers=_hdr(env, "auditor"), params={"target_id": call_id}).json()
    rows = audit if isinstance(audit, list) else audit.get("entries", audit.get("audit", []))
    assert {"call.start", "call.delete"} <= {r["action"] for r in rows}
