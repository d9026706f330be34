"""SIGTERM drains a real ``callvet serve``: /readyz says so at once, requests are still served, a live call
ends normally (``CALLVET_DRAIN_CALLS=wait``) or is handed over (the default) and resumes on a second
server process, a request in flight is finished after the listener closed, then the process exits 0."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from callvet.core import auth
from callvet.core.db import Database
from callvet.sim.calls import stream_call
from callvet.voice.call.tables import call_events, calls
from casecall import FIRST, SECOND, speech_8k, start_frame, stream_media
from serverproc import ServerProcess, subprocess_db_url, wait_for
from speech import espeak
from sqlalchemy import select

APP = json.loads((Path(__file__).parents[1] / "docs/contracts/application.example.json").read_text())
TEXT = ("I opened the account at the branch on the high street and I pay my bills on the first of every "
        "month. I travel for work and use the card for fuel and groceries.")


def _partial_request(port: int, key: str, body: bytes) -> socket.socket:
    """A decision request whose last bytes are not sent yet: in flight when the drain begins."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    s.sendall(head + body[:-10])
    return s


def _finish(s: socket.socket, body: bytes) -> tuple[int, dict[str, Any]]:
    s.sendall(body[-10:])
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, payload = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(payload)


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.mark.timeout(240)
def test_sigterm_drains(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir()
    db = Database(f"sqlite:///{data / 'callvet.db'}")
    db.create_schema()
    key = auth.create_key(db, "robot", "drain-test")
    srv = ServerProcess(data, env={"CALLVET_DRAIN_GRACE_S": "1", "CALLVET_DRAIN_TIMEOUT_S": "120",
                                   "CALLVET_DRAIN_CALLS": "wait"}).start()
    try:
        srv.wait_ready()
        hdr = {"Authorization": f"Bearer {key}"}
        audio = np.concatenate([np.zeros(4000, np.float32), espeak(TEXT, "en-us", sample_rate=8000),
                                np.zeros(8000, np.float32)])
        call: dict[str, Any] = {}
        streaming = threading.Thread(target=lambda: call.update(res=asyncio.run(stream_call(
            f"ws://127.0.0.1:{srv.port}/v1/calls/stream", audio, 8000, token=key, speed=1.0,
            params={"application_id": "drain-1"}))))
        streaming.start()
        assert wait_for(lambda: httpx.get(f"{srv.url}/metrics").text.count("callvet_calls_live 1.0") == 1, 30)
        body = json.dumps({"application": {**APP, "application_id": "drain-inflight"}}).encode()
        inflight = _partial_request(srv.port, key, body)

        srv.signal(signal.SIGTERM)
        assert wait_for(lambda: httpx.get(f"{srv.url}/readyz").status_code == 503, 5)
        ready = httpx.get(f"{srv.url}/readyz").json()
        assert "draining" in ready["reasons"] and ready["checks"]["drain"]["live_calls"] == 1
        assert httpx.get(f"{srv.url}/healthz").status_code == 200  # alive, just not ready
        during = httpx.post(f"{srv.url}/v1/decisions", headers=hdr,
                            json={"application": {**APP, "application_id": "drain-during"}})
        assert during.status_code == 200, during.text

        streaming.join(timeout=120)
        res = call["res"]
        assert res.close_code == 1000, (res.close_code, res.close_reason)  # the call ended, not cut
        assert res.of("callvet.voiceprint"), "the live call was scored to its end"

        assert wait_for(lambda: _refused(srv.port), 30), "the listener stayed open after the drain"
        assert srv.alive(), "the server quit with a request in flight"
        status, answer = _finish(inflight, body)
        assert status == 200 and answer["application_id"] == "drain-inflight"
        assert srv.wait(timeout=60) == 0, srv.log_tail()
        with db.connect() as conn:
            stored = set(conn.exec_driver_sql(
                "SELECT application_id FROM decision_records").scalars())
        assert {"drain-inflight", "drain-during"} <= stored
        assert key.split("_", 2)[2] not in srv.log_tail(1_000_000)  # no secret in the log
    finally:
        srv.stop()
        db.dispose()


@pytest.mark.timeout(300)
def test_sigterm_hands_a_live_call_over_to_another_server(db: Database, tmp_path: Path) -> None:
    """Two ``callvet serve`` processes on one database; a call streams to A; A gets SIGTERM: after the
    grace the robot is told ``handed_over`` (close 1012), A exits 0, and the robot's resume on B
    continues the same record from everything A heard."""
    url = subprocess_db_url(db)
    key = auth.create_key(db, "robot", "drain-handover")
    hdr = {"Authorization": f"Bearer {key}"}
    env = {"CALLVET_DATABASE_URL": url, "CALLVET_DRAIN_GRACE_S": "0.5", "CALLVET_DRAIN_TIMEOUT_S": "60",
           "CALLVET_CALL_STABLE_RESCORE_S": "0", "CALLVET_SPOOF": "0"}
    a = ServerProcess(tmp_path / "a", env=env).start()
    b = ServerProcess(tmp_path / "b", env=env).start()
    try:
        a.wait_ready()
        b.wait_ready()
        ev_a: list[dict[str, Any]] = []

        def sigterm_a() -> bool:
            a.signal(signal.SIGTERM)
            assert wait_for(lambda: any(e.get("code") == "handed_over" for e in ev_a), 30), ev_a[-3:]
            return False  # the server closes the socket: no stop from this robot

        asyncio.run(stream_media(f"ws://127.0.0.1:{a.port}/v1/calls/stream", start_frame({}, "CA-D1"),
                                 speech_8k(FIRST), events=ev_a, headers=hdr, until=sigterm_a))
        assert a.wait(timeout=60) == 0, a.log_tail()
        call_id = next(e for e in ev_a if e["event"] == "callvet.started")["call_id"]
        handed = next(e for e in ev_a if e.get("code") == "handed_over")
        assert f"resume_call_id={call_id}" in handed["message"]
        with db.connect() as conn:
            row = conn.execute(select(calls).where(calls.c.id == call_id)).one()
        assert row.ended_at is None and row.checkpoint, "the handed-over record must stay open"

        ev_b: list[dict[str, Any]] = []
        asyncio.run(stream_media(f"ws://127.0.0.1:{b.port}/v1/calls/stream",
                                 start_frame({"resume": "true"}, "CA-D1"), speech_8k(SECOND), events=ev_b,
                                 headers=hdr))
        started = next(e for e in ev_b if e["event"] == "callvet.started")
        assert started["call_id"] == call_id and started["resumed"]["epoch"] == 1, started
        carried = started["resumed"]["net_speech_s"]
        with db.connect() as conn:
            row = conn.execute(select(calls).where(calls.c.id == call_id)).one()
            kinds = [k for (k,) in conn.execute(select(call_events.c.kind).where(
                call_events.c.call_id == call_id).order_by(call_events.c.id)).all()]
            n = len(conn.execute(select(calls.c.id).where(calls.c.call_sid == "CA-D1")).all())
        assert n == 1 and row.epoch == 1 and row.state == "stopped" and row.ended_at is not None
        assert kinds.count("handed_over") == 1 and kinds.index("handed_over") < kinds.index("resumed")
        # all A heard was scored before it let go (the first half is ~9 s of speech), and B added to it
        assert carried > 7.0 and row.net_speech_s > carried + 7.0, (carried, row.net_speech_s)
        assert row.stats["final_verdict"]["net_speech_s"] > carried + 3.0
    finally:
        a.stop()
        b.stop()
