"""The questionnaire on a live call: the CallObserver adapter, hook by hook and through the real call
server with synthetic speech, the real VAD and the call server's own prosody."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from callserver import QueueTransport
from callvet.core import auth
from callvet.core.db import Database
from callvet.questionnaire.call_adapter import (
    OBSERVER_NAME,
    InterviewObserver,
    interview_observer_factory,
)
from callvet.questionnaire.service import InterviewService
from callvet.sim.questionnaire import GenuineApplicant, make_application
from callvet.voice.call.observer import AnswerEnd, CallInfo, QuestionAsked, Transcript
from casecall import collect

CALL_PROSODY = {
    "duration_s": 1.4,
    "speech_s": 1.2,
    "pause_count": 1,
    "pause_total_s": 0.2,
    "syllables": 6,
    "speech_rate": 4.1,
    "articulation_rate": 4.8,
    "pitch_mean_hz": 131.0,
    "pitch_std_st": 2.1,
    "pitch_range_st": 7.0,
    "energy_mean_db": -31.0,
    "energy_std_db": 4.0,
    "voiced_ratio": 0.7,
}


def _info(**params: Any) -> CallInfo:
    return CallInfo(
        call_id="c1",
        protocol="twilio",
        stream_id="s",
        call_sid="cs",
        application_id=params.pop("application_id", None),
        language=None,
        sample_rate=8000,
        params=params,
    )


def _end(index: int, qid: str | None, delay: float = 0.9) -> AnswerEnd:
    return AnswerEnd(
        index=index,
        start_s=10.0 * index,
        end_s=10.0 * index + 1.4,
        delay_s=delay,
        question_id=qid,
        prosody={**CALL_PROSODY, "delay_s": delay},
    )


def test_observer_drives_an_interview_hook_by_hook(db: Database) -> None:
    svc = InterviewService(db)
    app = make_application(10_007)
    caller = GenuineApplicant(app, random.Random(4))
    created = svc.create(app, actor="robot")
    info = _info(interview_id=created["interview_id"])
    obs = interview_observer_factory(svc)(info)
    assert isinstance(obs, InterviewObserver)

    async def run() -> list[dict[str, Any]]:
        events = await obs.on_start(info) or []
        assert events[0]["event"] == "callvet.question"
        log = list(events)
        for i in range(20):
            q = events[-1]
            if q["event"] != "callvet.question":
                break
            obs.on_question(info, QuestionAsked(q["question_id"], q["text"], ended_at_s=10.0 * i))
            assert await obs.on_transcript(info, Transcript("ignored", True, "q999-other")) is None
            text = caller.respond(q)["transcript"]
            if i % 2:
                assert await obs.on_answer_end(info, _end(i, q["question_id"])) is None
                events = await obs.on_transcript(info, Transcript(text, True, q["question_id"])) or []
            else:
                assert await obs.on_transcript(info, Transcript(text, True, None)) is None
                events = await obs.on_answer_end(info, _end(i, q["question_id"])) or []
            assert events[0]["event"] == "callvet.assessment"
            log += events
        await obs.on_stop(info, "hangup")
        return log

    log = asyncio.run(run())
    result = [e for e in log if e["event"] == "callvet.interview_result"]
    assert result and result[0]["verdict"] == "pass"
    stored = svc.get(created["interview_id"])
    assert stored["state"] == "finished"
    assert stored["answers"][0]["prosody"]["pitch_mean_hz"] == 131.0
    assert stored["answers"][0]["timing"]["delay_s"] == pytest.approx(0.9)


def test_call_ending_mid_interview_aborts_and_unknown_calls_are_inert(db: Database) -> None:
    svc = InterviewService(db)
    created = svc.create(make_application(10_008), actor="robot")
    info = _info(application_id=created["application_id"])
    obs = interview_observer_factory(svc)(info)
    assert obs is not None
    events = asyncio.run(obs.on_start(info))
    assert events and events[0]["question_id"] == created["question"]["question_id"]
    asyncio.run(obs.on_stop(info, "hangup"))
    assert svc.get(created["interview_id"])["state"] == "aborted"
    assert interview_observer_factory(svc)(_info()) is None
    stray = InterviewObserver(svc)
    assert asyncio.run(stray.on_start(_info(application_id="nobody"))) is None
    asyncio.run(stray.on_stop(_info(), "hangup"))


def test_api_call_server_has_the_interview_observer(api: tuple[Any, dict[str, dict[str, str]]]) -> None:
    """The composition root gives the call server its observers: the interview's first, then the case's,
    then the console's alarm feed, an adapter's (no process-global registry)."""
    names = [name for name, _ in api[0].app.state.ctx.calls.observer_factories()]
    assert names == [OBSERVER_NAME, "cases", "console-alarms"]


# ---------------------------------------------------------------- through the real call server


def _warm_vad() -> None:
    """Load the VAD before streaming, so its one-off model load does not fall inside the call (it once
    imported torch through the silero_vad package, racing scipy here; voice/vad.py no longer does)."""
    from callvet.voice.call.session import default_vad_factory

    default_vad_factory(8000, 700)


def test_interview_over_the_call_server_with_speech(db: Database) -> None:
    from callvet.sim.calls import mulaw_encode
    from callvet.voice.call.pipeline import CallConfig
    from callvet.voice.call.session import CallServer
    from speech import espeak

    _warm_vad()
    svc = InterviewService(db)
    app = next(a for a in (make_application(s) for s in range(10_100, 10_200)) if a.lang == "en")
    # The call plumbing under test, not the form-holder check (tests/test_questionnaire_independent.py).
    app = app.model_copy(update={"credit_profile": None, "bank_relationship": None})
    caller = GenuineApplicant(app, random.Random(11))
    created = svc.create(app, actor="robot")
    server = CallServer(
        db,
        cfg=CallConfig(workers=2),
        scoring=None,
        observers=[(OBSERVER_NAME, interview_observer_factory(svc))],
    )
    t = QueueTransport()
    frame = 0

    async def put_audio(x: np.ndarray) -> None:
        nonlocal frame
        for i in range(0, len(x), 160):
            payload = base64.b64encode(mulaw_encode(x[i : i + 160])).decode()
            await t.inbox.put(
                json.dumps(
                    {
                        "event": "media",
                        "media": {"track": "inbound", "chunk": str(frame + 1), "payload": payload},
                    }
                )
            )
            frame += 1
            if frame % 10 == 0:
                await asyncio.sleep(0)

    async def wait_for(n_questions: int) -> bool:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if t.of("callvet.interview_result"):
                return False
            if len(t.of("callvet.question")) >= n_questions:
                return True
            await asyncio.sleep(0.02)
        raise AssertionError(f"no question {n_questions}; got {t.sent[-3:]}")

    async def robot() -> None:
        await t.inbox.put(
            json.dumps(
                {
                    "event": "start",
                    "start": {
                        "streamSid": "MZ9",
                        "callSid": "CA9",
                        "customParameters": {
                            "application_id": app.application_id,
                            "interview_id": created["interview_id"],
                        },
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    },
                }
            )
        )
        asked = 0
        while asked < 16 and await wait_for(asked + 1):
            q = t.of("callvet.question")[asked]
            asked += 1
            await t.inbox.put(
                json.dumps(
                    {
                        "event": "callvet.question",
                        "question_id": q["question_id"],
                        "text": q["text"],
                        "ended_at_s": frame * 0.02,
                    }
                )
            )
            reply = caller.respond(q)
            text = reply["transcript"]
            await put_audio(np.zeros(int(min(reply["timing"]["delay_s"], 3.0) * 8000), np.float32))
            await put_audio(espeak(text, "en-us+m3", sample_rate=8000))
            await t.inbox.put(
                json.dumps(
                    {
                        "event": "callvet.transcript",
                        "text": text,
                        "final": True,
                        "question_id": q["question_id"],
                    }
                )
            )
            await put_audio(np.zeros(int(1.2 * 8000), np.float32))
        await t.inbox.put(json.dumps({"event": "stop"}))

    async def go() -> None:
        await asyncio.gather(server.handle(t, "twilio", "robot:test"), robot())

    asyncio.run(go())
    server.close()
    assert not [e for e in t.of("callvet.error") if e.get("code") != "voiceprint_unavailable"], t.of(
        "callvet.error"
    )
    assessments = t.of("callvet.assessment")
    assert assessments and all(
        a["outcome"] in {"correct", "partly", "wrong", "no_answer"} for a in assessments
    )
    result = t.of("callvet.interview_result")
    assert result and result[0]["verdict"] == "pass", (assessments, result)
    stored = svc.get(created["interview_id"])
    assert stored["state"] == "finished"
    first = stored["answers"][0]
    assert first["prosody"]["pitch_mean_hz"] > 50 and first["timing"]["delay_s"] == pytest.approx(
        0.8, abs=0.35
    )


def test_interview_over_a_real_websocket_call(tmp_path: Path) -> None:
    """The robot's whole path: REST creates the interview, a WebSocket call carries the questions out and
    speech, ASR text and timing in, through the API app as deployed (router lifespan registers the
    observer)."""
    import websockets
    from callserver import ServerThread
    from callvet.api.app import create_app
    from callvet.core import auth
    from callvet.core.settings import Settings
    from callvet.sim.calls import mulaw_encode
    from fastapi.testclient import TestClient
    from speech import espeak

    _warm_vad()
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'callvet.db'}")
    db = Database(settings.database_url)
    db.create_schema()
    app_ = create_app(settings, db)
    key = auth.create_key(db, "robot", "robot-test")
    hdr = {"Authorization": f"Bearer {key}"}
    application = next(a for a in (make_application(s) for s in range(10_300, 10_400)) if a.lang == "en")
    application = application.model_copy(update={"credit_profile": None, "bank_relationship": None})
    caller = GenuineApplicant(application, random.Random(5))

    async def robot(url: str, interview_id: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        async with websockets.connect(url, additional_headers=hdr) as ws:
            reader = collect(ws, events)
            await ws.send(
                json.dumps(
                    {
                        "event": "start",
                        "streamSid": "MZ7",
                        "start": {
                            "streamSid": "MZ7",
                            "callSid": "CA7",
                            "tracks": ["inbound"],
                            "customParameters": {
                                "application_id": application.application_id,
                                "interview_id": interview_id,
                            },
                            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                        },
                    }
                )
            )
            chunk = 0

            async def audio(x: np.ndarray) -> None:
                nonlocal chunk
                for i in range(0, len(x), 160):
                    chunk += 1
                    await ws.send(
                        json.dumps(
                            {
                                "event": "media",
                                "streamSid": "MZ7",
                                "media": {
                                    "track": "inbound",
                                    "chunk": str(chunk),
                                    "timestamp": str(20 * chunk),
                                    "payload": base64.b64encode(mulaw_encode(x[i : i + 160])).decode(),
                                },
                            }
                        )
                    )

            asked = 0
            deadline = time.monotonic() + 120
            while asked < 16 and time.monotonic() < deadline:
                questions = [e for e in events if e.get("event") == "callvet.question"]
                if any(e.get("event") == "callvet.interview_result" for e in events):
                    break
                if len(questions) <= asked:
                    await asyncio.sleep(0.02)
                    continue
                q = questions[asked]
                asked += 1
                await ws.send(
                    json.dumps(
                        {
                            "event": "callvet.question",
                            "question_id": q["question_id"],
                            "text": q["text"],
                            "ended_at_s": chunk * 0.02,
                        }
                    )
                )
                reply = caller.respond(q)
                text = reply["transcript"]
                # The caller's own pause before answering: a fixed one would read as scripted delivery.
                await audio(np.zeros(int(min(reply["timing"]["delay_s"], 3.0) * 8000), np.float32))
                await audio(espeak(text, "en-us+f2", sample_rate=8000))
                await ws.send(
                    json.dumps(
                        {
                            "event": "callvet.transcript",
                            "text": text,
                            "final": True,
                            "question_id": q["question_id"],
                        }
                    )
                )
                await audio(np.zeros(int(1.2 * 8000), np.float32))
            await ws.send(json.dumps({"event": "stop", "streamSid": "MZ7", "stop": {}}))
            await asyncio.wait_for(reader, 30)
        return events

    with ServerThread(app_) as srv, TestClient(app_) as client:
        r = client.post(
            "/v1/interviews", json={"application": application.model_dump(mode="json")}, headers=hdr
        )
        assert r.status_code == 201, r.text
        iid = r.json()["interview_id"]
        events = asyncio.run(robot(srv.url("/v1/calls/stream"), iid))
        result = [e for e in events if e.get("event") == "callvet.interview_result"]
        assert result and result[0]["verdict"] == "pass", [
            e for e in events if e.get("event") != "callvet.answer_end"
        ]
        got = client.get(f"/v1/interviews/{iid}", headers=_reader(db)).json()
        assert got["state"] == "finished" and got["answers"][0]["prosody"]["pitch_mean_hz"] > 50
    db.dispose()


def _reader(db: Database) -> dict[str, str]:
    """Robots run interviews but may not read them back (issue 9): an analyst key reads the result."""
    return {"Authorization": f"Bearer {auth.create_key(db, 'analyst', 'reader')}"}
