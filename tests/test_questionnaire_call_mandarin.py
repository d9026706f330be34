"""A Mandarin interview end to end on a live call whose robot sends no transcript: Twilio Media Streams
framing (8 kHz mu-law) over a real WebSocket to the API app as deployed; the call server recognises
every answer itself with Whisper base (worker process, question as prompt, simplified output) and the
questionnaire scores it, up to the interview's verdict.

Speech is synthetic: the simulated owner's answers in hanzi, turned into tone-numbered pinyin (pypinyin)
and read by espeak-ng's ``cmn-latn-pinyin`` voice (its hanzi voice reads characters badly)."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from callvet.core import auth
from callvet.core.db import Database
from callvet.core.settings import get_settings
from callvet.questionnaire.scoring import Outcome
from callvet.sim.questionnaire import GenuineApplicant, make_application
from casecall import collect


def _pinyin(text: str, *, digits: bool = False) -> str:
    """Tone-numbered pinyin of what the caller says: digits as the words spoken ("3" -> san1)."""
    import cn2an
    from pypinyin import Style, lazy_pinyin

    if digits:  # phone-number tails are said digit by digit
        text = re.sub(r"\d", lambda m: "零一二三四五六七八九"[int(m.group(0))], text)
    text = re.sub(r"\d+(\.\d+)?", lambda m: cn2an.an2cn(m.group(0), "low"), text)
    return " ".join(lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True,
                                errors=lambda s: list(s)))


@pytest.fixture(scope="module")
def whisper_built() -> Path:
    from callvet.models import whisper

    models_dir = get_settings().models_dir
    if not whisper.is_built(models_dir):
        pytest.fail(f"Whisper model not built under {models_dir}: `callvet models build` (./dev test does)")
    return models_dir


def test_mandarin_interview_end_to_end_with_server_side_whisper(tmp_path: Path, whisper_built: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import websockets
    from callserver import ServerThread
    from callvet.api.app import create_app
    from callvet.core import auth
    from callvet.core.settings import Settings
    from callvet.sim.calls import mulaw_encode
    from callvet.voice.call.session import default_vad_factory
    from callvet.voice.whisper import to_simplified
    from fastapi.testclient import TestClient
    from speech import espeak

    default_vad_factory(16000, 700)
    # This robot streams faster than real time. On a machine busy with other tests the server can fall
    # behind the wall clock and, by design, shed the oldest waiting audio (callvet.lag); a shed answer would
    # never be heard. Shedding is tested in test_voice_call_session.py, not here.
    monkeypatch.setenv("CALLVET_MAX_LAG_S", "600")
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'callvet.db'}",
                        models_dir=whisper_built)
    db = Database(settings.database_url)
    db.create_schema()
    app_ = create_app(settings, db)
    hdr = {"Authorization": f"Bearer {auth.create_key(db, 'robot', 'robot-zh')}"}
    application = next(a for a in (make_application(s) for s in range(20_700, 20_800)) if a.lang == "zh")
    # Form facts only: the shorter interview (no form-holder bound) keeps this test's minutes down.
    application = application.model_copy(update={"credit_profile": None, "bank_relationship": None})
    caller = GenuineApplicant(application, random.Random(11))
    spoken: list[tuple[str, str]] = []

    async def robot(url: str, interview_id: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        async with websockets.connect(url, additional_headers=hdr) as ws:
            reader = collect(ws, events)
            await ws.send(json.dumps({"event": "start", "streamSid": "MZzh", "start": {
                "streamSid": "MZzh", "callSid": "CAzh", "tracks": ["inbound"],
                "customParameters": {"application_id": application.application_id,
                                     "interview_id": interview_id, "language": "zh-CN"},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
            chunk = 0

            async def audio(x: np.ndarray) -> None:
                nonlocal chunk
                for i in range(0, len(x), 160):
                    chunk += 1
                    await ws.send(json.dumps({"event": "media", "streamSid": "MZzh", "media": {
                        "track": "inbound", "chunk": str(chunk), "timestamp": str(20 * chunk),
                        "payload": base64.b64encode(mulaw_encode(x[i : i + 160])).decode()}}))

            asked = 0
            deadline = time.monotonic() + 480
            while asked < 16 and time.monotonic() < deadline:
                if any(e.get("event") == "callvet.interview_result" for e in events):
                    break
                questions = [e for e in events if e.get("event") == "callvet.question"]
                if len(questions) <= asked:
                    # A phone line keeps streaming while the server recognises the answer.
                    await audio(np.zeros(800, np.float32))
                    await asyncio.sleep(0.1)
                    continue
                q = questions[asked]
                asked += 1
                await ws.send(json.dumps({"event": "callvet.question", "question_id": q["question_id"],
                                          "text": q["text"], "ended_at_s": chunk * 0.02}))
                reply = caller.respond(q)
                spoken.append((q["question_id"], reply["transcript"]))
                await audio(np.zeros(int(min(reply["timing"]["delay_s"], 3.0) * 8000), np.float32))
                said = _pinyin(reply["transcript"], digits=q["answer_type"] == "digits")
                await audio(espeak(said, "cmn-latn-pinyin", rate=140, sample_rate=8000))
                await audio(np.zeros(int(1.2 * 8000), np.float32))
            await ws.send(json.dumps({"event": "stop", "streamSid": "MZzh", "stop": {}}))
            await asyncio.wait_for(reader, 120)
        return events

    try:
        with ServerThread(app_) as srv, TestClient(app_) as client:
            r = client.post("/v1/interviews", json={"application": application.model_dump(mode="json")},
                            headers=hdr)
            assert r.status_code == 201, r.text
            assert r.json()["question"]["language"].startswith("zh")
            iid = r.json()["interview_id"]
            events = asyncio.run(robot(srv.url("/v1/calls/stream"), iid))
            got = client.get(f"/v1/interviews/{iid}", headers=_reader(db)).json()
    finally:
        db.dispose()
    brief = [e for e in events if e.get("event") not in ("callvet.answer_end", "callvet.answer_start")]
    assert [e["asr"] for e in events if e.get("event") == "callvet.started"] == ["asr:whisper-base"], brief
    heard = [e for e in events if e.get("event") == "callvet.transcript"]
    assert heard and all(e["source"] == "asr:whisper-base" and e["language"] == "zh" for e in heard)
    assessed = [e for e in events if e.get("event") == "callvet.assessment"]
    assert assessed and all(a["transcript_source"] == "asr:whisper-base" for a in assessed)
    result = [e for e in events if e.get("event") == "callvet.interview_result"]
    assert result, (spoken, [(e.get("event"), e.get("question_id"), e.get("text")) for e in brief])
    assert got["state"] == "finished" and got["result"]["verdict"] == result[0]["verdict"]
    stored = [a["transcript"] for a in got["answers"]]
    assert len(stored) == len(assessed) >= 3
    # Mandarin in simplified characters came out of the recogniser and every answer was judged. Whether
    # the owner's answers are judged right is not asserted: Whisper base on espeak's pinyin voice misses
    # most short names and single numbers (86.5 % CER, docs/asr.md), and in CI on a loaded machine it once
    # heard none of four answers; recognition accuracy is measured in bench/asr, not here.
    assert any(any("\u4e00" <= c <= "\u9fff" for c in t) for t in stored)
    assert all(to_simplified(t) == t for t in stored)
    outcomes = {a["assessment"]["outcome"] for a in got["answers"]}
    assert outcomes and outcomes <= {o.value for o in Outcome}, outcomes


def _reader(db: Database) -> dict[str, str]:
    """Robots run interviews but may not read them back (issue 9): an analyst key reads the result."""
    return {"Authorization": f"Bearer {auth.create_key(db, 'analyst', 'reader')}"}
