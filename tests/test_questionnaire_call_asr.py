"""The questionnaire on a live call whose robot sends no transcript, with the light English engine
(``CALLVET_ASR_ENGINE=pocketsphinx``): the call server recognises the answers itself and the interview
advances; a robot transcript wins; with PocketSphinx alone Mandarin has no server recogniser and says so.
Whisper (zh and en, the default when built) is tested in test_questionnaire_call_mandarin.py."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from callvet.core import auth
from callvet.core.db import Database
from callvet.sim.questionnaire import GenuineApplicant, make_application
from casecall import collect

VOICE = "en-us+f2"


def _warm_vad() -> None:
    """Load the VAD in this thread first (its first load imports torch; see the call-adapter tests)."""
    from callvet.voice.call.session import default_vad_factory

    default_vad_factory(16000, 700)


def _pcm(x: np.ndarray) -> bytes:
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _app(tmp_path: Path) -> tuple[Any, Database, dict[str, str]]:
    from callvet.api.app import create_app
    from callvet.core import auth
    from callvet.core.settings import Settings

    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'callvet.db'}")
    db = Database(settings.database_url)
    db.create_schema()
    app_ = create_app(settings, db)
    key = auth.create_key(db, "robot", "robot-asr-test")
    return app_, db, {"Authorization": f"Bearer {key}"}


async def _robot(url: str, hdr: dict[str, str], params: dict[str, Any], answers: list[str], *,
                 transcript: str = "never", max_questions: int = 3) -> list[dict[str, Any]]:
    """A FreeSWITCH-fork robot at 16 kHz: asks each question, speaks an answer, and sends its own
    transcript ``never`` or only ``after_end`` (after the server's answer_end)."""
    import websockets
    from speech import espeak

    events: list[dict[str, Any]] = []

    async def wait(pred: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            await asyncio.sleep(0.02)
        return False

    def of(name: str) -> list[dict[str, Any]]:
        return [e for e in events if e.get("event") == name]

    async with websockets.connect(url, additional_headers=hdr) as ws:
        reader = collect(ws, events)
        await ws.send(json.dumps({"sampleRate": 16000, "uuid": "fork-asr", "customParameters": params}))
        sent_s = 0.0

        async def audio(x: np.ndarray) -> None:
            nonlocal sent_s
            for i in range(0, len(x), 320):
                await ws.send(_pcm(x[i : i + 320]))
            sent_s += len(x) / 16000

        await wait(lambda: of("callvet.question") or of("callvet.interview_result"), 30)
        for n in range(max_questions):
            if of("callvet.interview_result") or len(of("callvet.question")) <= n:
                break
            q = of("callvet.question")[n]
            await ws.send(json.dumps({"event": "callvet.question", "question_id": q["question_id"],
                                      "text": q["text"], "ended_at_s": sent_s}))
            ends = len(of("callvet.answer_end"))
            await audio(np.zeros(8000, np.float32))
            await audio(espeak(answers[n % len(answers)], VOICE))
            await audio(np.zeros(int(1.2 * 16000), np.float32))
            if transcript == "after_end":
                await wait(lambda e=ends: len(of("callvet.answer_end")) > e, 30)
                await ws.send(json.dumps({"event": "callvet.transcript", "text": answers[n % len(answers)],
                                          "final": True, "question_id": q["question_id"]}))
            ok = await wait(lambda n=n: len(of("callvet.question")) > n + 1 or of("callvet.interview_result"),
                            3.0 if params.get("language") == "zh" and transcript == "never" else 60)
            if not ok:
                break
        await ws.send(json.dumps({"event": "stop"}))
        await asyncio.wait_for(reader, 30)
    return events


def _run_call(tmp_path: Path, application: Any, params: dict[str, Any], answers: list[str],
              **kw: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from callserver import ServerThread
    from fastapi.testclient import TestClient

    _warm_vad()
    app_, db, hdr = _app(tmp_path)
    try:
        with ServerThread(app_) as srv, TestClient(app_) as client:
            r = client.post("/v1/interviews", json={"application": application.model_dump(mode="json")},
                            headers=hdr)
            assert r.status_code == 201, r.text
            iid = r.json()["interview_id"]
            events = asyncio.run(_robot(srv.url("/v1/calls/fork"), hdr,
                                        {"application_id": application.application_id,
                                         "interview_id": iid, **params}, answers, **kw))
            got = client.get(f"/v1/interviews/{iid}", headers=_reader(db)).json()
    finally:
        db.dispose()
    return events, got


def _of(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == name]


def _english_application() -> Any:
    return next(a for a in (make_application(s) for s in range(10_300, 10_400)) if a.lang == "en")


def test_interview_advances_on_the_servers_own_recognition(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The robot never sends a transcript: every answer is recognised by the call server and scored."""
    monkeypatch.setenv("CALLVET_ASR_ENGINE", "pocketsphinx")
    application = _english_application()
    caller = GenuineApplicant(application, random.Random(5))
    answers = [caller.respond({"checks": ["applicant.name"], "answer_type": "name", "text": "",
                               "question_id": "x", "language": "en"})["transcript"],
               "my income is fifteen thousand", "yes"]
    events, got = _run_call(tmp_path, application, {"language": "en"}, answers)
    started = _of(events, "callvet.started")
    assert started and started[0]["asr"] == "asr:pocketsphinx"
    heard = [e for e in _of(events, "callvet.transcript") if e.get("source") == "asr:pocketsphinx"]
    assessed = _of(events, "callvet.assessment")
    assert len(assessed) >= 2, [e for e in events if e.get("event") != "callvet.answer_end"]
    assert all(a["transcript_source"] == "asr:pocketsphinx" for a in assessed)
    stored = [a["transcript"] for a in got["answers"]]
    assert len(stored) == len(assessed) and stored == [h["text"] for h in heard][: len(stored)]
    assert all(t.strip() for t in stored) and heard[0]["audio_s"] > 0.5
    assert not _of(events, "callvet.error") or {e["code"] for e in _of(events, "callvet.error")} == {
        "voiceprint_unavailable"}


def test_a_robot_transcript_within_the_grace_period_wins(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLVET_ASR_GRACE_MS", "5000")
    application = _english_application()
    events, got = _run_call(tmp_path, application, {"language": "en"}, ["my answer is blue sky"],
                            transcript="after_end", max_questions=2)
    assessed = _of(events, "callvet.assessment")
    assert len(assessed) == 2 and all(a["transcript_source"] == "robot" for a in assessed)
    assert not [e for e in _of(events, "callvet.transcript") if e.get("source")]
    assert [a["transcript"] for a in got["answers"]] == ["my answer is blue sky"] * 2


def test_with_the_light_engine_mandarin_needs_the_robots_transcript(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLVET_ASR_ENGINE", "pocketsphinx")
    application = next(a for a in (make_application(s) for s in range(10_300, 10_400)) if a.lang == "zh")
    events, got = _run_call(tmp_path, application, {"language": "zh", "asr": "server"}, ["wo shi"],
                            max_questions=1)
    assert _of(events, "callvet.started")[0]["asr"] is None
    assert "asr_unavailable" in {e["code"] for e in _of(events, "callvet.error")}
    assert _of(events, "callvet.answer_end") and not _of(events, "callvet.assessment")
    assert not _of(events, "callvet.transcript") and got["answers"] == []
    (tmp_path / "again").mkdir()
    events, got = _run_call(tmp_path / "again", application, {"language": "zh"}, ["我叫王伟"],
                            transcript="after_end", max_questions=1)
    assert [a["transcript_source"] for a in _of(events, "callvet.assessment")] == ["robot"]


def _reader(db: Database) -> dict[str, str]:
    """Robots run interviews but may not read them back (issue 9): an analyst key reads the result."""
    return {"Authorization": f"Bearer {auth.create_key(db, 'analyst', 'reader')}"}
