"""Call-server bounds with real WebSocket clients on a real uvicorn server: idle or silently closed
sockets leave no call records, and an absurd media ``chunk`` is a protocol error, not a billion lost
frames (issue 9)."""

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
from callvet.sim.calls import mulaw_encode
from callvet.voice.call.pipeline import CallConfig
from callvet.voice.call.serializers import JitterBuffer, ProtocolError
from callvet.voice.call.session import CallServer

START = json.dumps({"event": "start", "streamSid": "MZ9", "start": {
    "streamSid": "MZ9", "callSid": "CA9", "tracks": ["inbound"], "customParameters": {},
    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
STOP = json.dumps({"event": "stop", "streamSid": "MZ9", "stop": {}})
CONNECTED = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def _media(chunk: int) -> str:
    payload = base64.b64encode(mulaw_encode(np.zeros(160, np.float32))).decode()
    return json.dumps({"event": "media", "streamSid": "MZ9", "media": {
        "track": "inbound", "chunk": str(chunk), "timestamp": str(20 * chunk), "payload": payload}})


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, Any]]:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'callvet.db'}")
    db = Database(settings.database_url)
    db.create_schema()
    app = create_app(settings, db)
    server = CallServer(db, cfg=CallConfig(workers=1, idle_timeout_s=0.5), scoring=None)
    app.state.ctx.override("calls", server)
    key = auth.create_key(db, auth.Role.ROBOT.value, "robot")
    with ServerThread(app) as srv:
        yield {"srv": srv, "key": key, "store": server.store}


async def _session(url: str, key: str, messages: list[str], *, close_first: bool = False
                   ) -> tuple[list[dict[str, Any]], int | None]:
    events: list[dict[str, Any]] = []
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        for m in messages:
            await ws.send(m)
        if close_first:
            await ws.close()
            return events, ws.close_code
        try:
            async for msg in ws:
                events.append(json.loads(msg))
        except websockets.ConnectionClosed:
            pass
        return events, ws.close_code


def test_idle_and_silent_sockets_leave_no_call_records(env: dict[str, Any]) -> None:
    url = env["srv"].url("/v1/calls/stream")

    async def go() -> list[Any]:
        idle = [_session(url, env["key"], []) for _ in range(30)]
        hello = [_session(url, env["key"], [CONNECTED]) for _ in range(10)]
        gone = [_session(url, env["key"], [CONNECTED], close_first=True) for _ in range(10)]
        return await asyncio.wait_for(asyncio.gather(*idle, *hello, *gone), 60)

    results = asyncio.run(go())
    idle_codes = [code for _, code in results[:40]]
    assert idle_codes == [1008] * 40
    assert all(ev and ev[-1]["code"] == "idle_timeout" for ev, _ in results[:40])
    assert env["store"].count() == 0

    events, code = asyncio.run(_session(url, env["key"], [START, *(_media(k) for k in range(1, 11)), STOP]))
    assert code == 1000 and env["store"].count() == 1
    call = env["store"].get(next(e for e in events if e["event"] == "callvet.started")["call_id"])
    assert call["state"] == "stopped" and call["audio_s"] == pytest.approx(0.2)


def test_absurd_chunk_jump_is_a_protocol_error_not_lost_frames(env: dict[str, Any]) -> None:
    url = env["srv"].url("/v1/calls/stream")
    msgs = [START, *(_media(k) for k in range(1, 11)), _media(1_000_000_000),
            *(_media(k) for k in range(11, 21)), _media(25), STOP]
    events, code = asyncio.run(_session(url, env["key"], msgs))
    assert code == 1000
    errors = [e["code"] for e in events if e["event"] == "callvet.error"]
    assert [c for c in errors if c != "voiceprint_unavailable"] == ["bad_chunk"]  # scoring=None here
    call = env["store"].get(next(e for e in events if e["event"] == "callvet.started")["call_id"])
    assert call["stats"]["lost"] == 4  # 21..24, the real gap
    assert call["audio_s"] == pytest.approx(25 * 0.02)
    logged = [e["data"]["code"] for e in call["events"] if e["kind"] == "error"]
    assert logged.count("bad_chunk") == 1


def test_jitter_buffer_bounds() -> None:
    jb = JitterBuffer(4, max_jump=100)
    assert [s for s, _, _ in jb.push(1, b"\x01")] == [1]
    for bad in (1 << 32, -1, 103):
        with pytest.raises(ProtocolError) as exc:
            jb.push(bad, b"\x01")
        assert exc.value.code == "bad_chunk" and exc.value.close_code is None
    assert jb.lost == 0 and jb.next_seq == 2
    assert [s for s, _, _ in jb.push(101, b"\x01")] == []  # within the bound: held, gap filled later
