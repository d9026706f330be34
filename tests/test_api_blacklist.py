"""Blacklist REST API end to end with real speech, on every configured database (``api`` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from callvet.core.settings import Settings
from callvet.voice.audio import mulaw_encode
from callvet.voice.engine import VoiceEngine
from speech import asterisk_concat, espeak, phone_channel, to_wav_bytes

TEXTS = [
    "My name is John and I would like to apply for a credit card today please.",
    "I was born in nineteen eighty two and I live on Main Street in Springfield.",
    "The quick brown fox jumps over the lazy dog near the river bank at noon.",
]
FRAUD_A, FRAUD_B, GENUINE = "en-us+m3", "en+klatt", "en-us+f2"
IDS = "/v1/blacklist/identities"
IDENTIFY = "/v1/voiceprint/identify"


def wav(voice: str, text_no: int) -> bytes:
    return to_wav_bytes(espeak(TEXTS[text_no], voice), 16000)


def upload(data: bytes, **form: Any) -> dict[str, Any]:
    return {"files": {"audio": ("clip.wav", data, "application/octet-stream")},
            "data": {k: str(v) for k, v in form.items()}}


@pytest.fixture(scope="module")
def engine() -> VoiceEngine:
    return VoiceEngine.from_settings(Settings())


@pytest.fixture
def bapi(api: tuple[Any, dict[str, dict[str, str]]], engine: VoiceEngine
         ) -> Iterator[tuple[Any, dict[str, dict[str, str]]]]:
    """The app with the module's engine as its ``voice`` service (loaded once, not once per test)."""
    client, headers = api
    client.app.state.ctx.service("voice", lambda _ctx: engine)
    yield client, headers


def create(client: Any, h: dict[str, dict[str, str]], label: str, voice: str, text_no: int = 0) -> int:
    r = client.post(IDS, json={"label": label, "notes": "seen in case 42"}, headers=h["analyst"])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["samples"] == 0 and body["created_by"] == "analyst:test-analyst"
    r = client.post(f"{IDS}/{body['id']}/samples", headers=h["analyst"], **upload(wav(voice, text_no)))
    assert r.status_code == 201, r.text
    assert r.json()["net_speech_s"] >= 3.0
    return int(body["id"])


def test_enrol_identify_alarm_and_genuine_caller(bapi: tuple[Any, dict[str, dict[str, str]]]) -> None:
    client, h = bapi
    a = create(client, h, "fraudster A", FRAUD_A)
    b = create(client, h, "fraudster B", FRAUD_B)
    r = client.post(IDENTIFY, headers=h["robot"], **upload(wav(FRAUD_A, 1)))
    assert r.status_code == 200, r.text
    hit = r.json()
    assert hit["alarm"] is True and hit["matches"][0]["identity_id"] == a
    assert hit["matches"][0]["label"] == "fraudster A" and hit["matches"][0]["score"] >= hit["threshold"]
    assert {m["identity_id"] for m in hit["matches"]} == {a, b} and hit["searched"] == 2
    r = client.post(IDENTIFY, headers=h["analyst"], **upload(wav(GENUINE, 1)))
    miss = r.json()
    assert r.status_code == 200 and miss["alarm"] is False
    assert miss["matches"][0]["score"] < miss["threshold"]
    human = to_wav_bytes(asterisk_concat(["vm-intro", "vm-options"]), 8000)
    r = client.post(IDENTIFY, headers=h["robot"], **upload(human))
    assert r.status_code == 200 and r.json()["alarm"] is False and r.json()["net_speech_s"] > 10
    phone = phone_channel(espeak(TEXTS[2], FRAUD_B, sample_rate=8000), 8000, snr_db=25)
    # G.711 bytes from the engine's encoder: tests/speech.py's to_mulaw is not bit-compatible with G.711.
    r = client.post(IDENTIFY, headers=h["robot"],
                    **upload(mulaw_encode(phone), encoding="mulaw", sample_rate=8000))
    assert r.status_code == 200, r.text
    assert r.json()["net_speech_s"] >= 3.0 and r.json()["matches"][0]["identity_id"] == b

    alias = client.post(IDS, json={"label": "alias"}, headers=h["analyst"]).json()["id"]
    r = client.post(f"{IDS}/{alias}/samples", headers=h["analyst"], **upload(wav(FRAUD_A, 2)))
    assert r.status_code == 201
    assert [d["identity_id"] for d in r.json()["possible_duplicate_of"]] == [a]
    r = client.post(f"{IDS}/{alias}/samples", headers=h["analyst"], **upload(wav(FRAUD_A, 2)))
    assert r.status_code == 409 and r.json()["code"] == "duplicate_sample"

    listed = client.get(IDS, headers=h["auditor"]).json()["identities"]
    assert [(i["id"], i["samples"]) for i in listed] == [(a, 1), (b, 1), (alias, 1)]
    st = client.get("/v1/blacklist/status", headers=h["auditor"]).json()
    assert st["kind"] == "exact" and st["searchable_prints"] == 3
    assert st["unsearchable_prints_by_backend"] == {}
    assert st["reenrolment"]["required"] is False and st["reenrolment"]["identities_not_searchable"] == 0
    assert client.get("/v1/blacklist/status", headers=h["robot"]).status_code == 403
    detail = client.get(f"{IDS}/{a}", headers=h["auditor"]).json()
    assert detail["label"] == "fraudster A" and len(detail["prints"]) == 1
    assert detail["prints"][0]["searchable"]


def test_bad_audio_and_sizes(bapi: tuple[Any, dict[str, dict[str, str]]]) -> None:
    client, h = bapi
    a = create(client, h, "fraudster A", FRAUD_A)
    hiss = (np.random.default_rng(1).standard_normal(16000 * 5) * 0.003).astype(np.float32)
    r = client.post(IDENTIFY, headers=h["robot"], **upload(to_wav_bytes(hiss, 16000)))
    assert r.status_code == 422 and r.json()["code"] == "too_little_speech"
    r = client.post(f"{IDS}/{a}/samples", headers=h["analyst"], **upload(to_wav_bytes(hiss, 16000)))
    assert r.status_code == 422 and r.json()["code"] == "too_little_speech"
    r = client.post(IDENTIFY, headers=h["robot"], **upload(b"GIF89a not a recording" * 10))
    assert r.status_code == 422 and r.json()["code"] == "not_audio"
    r = client.post(IDENTIFY, headers=h["robot"], **upload(b"\x01\x02\x03", encoding="pcm16"))
    assert r.status_code == 422 and r.json()["code"] == "bad_sample_rate"
    r = client.post(f"{IDS}/999999/samples", headers=h["analyst"], **upload(wav(FRAUD_A, 1)))
    assert r.status_code == 404
    assert client.get(f"{IDS}/{a}", headers=h["analyst"]).json()["samples"] == 1

    ctx = client.app.state.ctx
    ctx.settings = ctx.settings.model_copy(update={"max_upload_bytes": 100_000})
    big = wav(FRAUD_A, 1)
    assert 100_000 < len(big) < 100_000 + 64 * 1024
    r = client.post(IDENTIFY, headers=h["robot"], **upload(big))
    assert r.status_code == 413 and r.json()["code"] == "too_large", r.text
    assert r.json()["detail"].startswith("audio file")
    r = client.post(IDENTIFY, headers=h["robot"], **upload(big + bytes(200_000)))
    assert r.status_code == 413 and r.json()["code"] == "too_large", r.text
    assert r.json()["detail"].startswith("request body")

    boundary = "cvboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"x.wav\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(100):
            yield bytes(16_384)
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post(IDENTIFY, content=chunks(),
                    headers={**h["robot"], "content-type": f"multipart/form-data; boundary={boundary}"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and r.json()["code"] == "too_large", r.text
    assert r.json()["detail"].startswith("request body")


def test_roles(bapi: tuple[Any, dict[str, dict[str, str]]]) -> None:
    client, h = bapi
    body = {"label": "x"}
    assert client.post(IDS, json=body).status_code == 401
    assert client.post(IDS, json=body, headers={"Authorization": "Bearer cv_nope_nope"}).status_code == 401
    for role in ("auditor", "robot", "approver", "risk_officer"):
        assert client.post(IDS, json=body, headers=h[role]).status_code == 403
    assert client.post(IDS, json={"label": ""}, headers=h["analyst"]).status_code == 422
    ident = client.post(IDS, json=body, headers=h["admin"]).json()["id"]
    assert client.get(IDS, headers=h["robot"]).status_code == 403
    assert client.get(f"{IDS}/{ident}", headers=h["approver"]).status_code == 403
    assert client.get(IDS, headers=h["auditor"]).status_code == 200
    assert client.delete(f"{IDS}/{ident}?reason=x", headers=h["auditor"]).status_code == 403
    assert client.delete(f"{IDS}/{ident}?reason=x", headers=h["robot"]).status_code == 403
    r = client.post(f"{IDS}/{ident}/samples", headers=h["robot"], **upload(wav(FRAUD_A, 0)))
    assert r.status_code == 403
    for role in ("auditor", "approver", "risk_officer"):
        assert client.post(IDENTIFY, headers=h[role], **upload(wav(FRAUD_A, 0))).status_code == 403


def test_delete_removes_match_and_is_audited(bapi: tuple[Any, dict[str, dict[str, str]]]) -> None:
    client, h = bapi
    a = create(client, h, "fraudster A", FRAUD_A)
    b = create(client, h, "fraudster B", FRAUD_B)
    assert client.post(IDENTIFY, headers=h["robot"], **upload(wav(FRAUD_A, 1))).json()["alarm"]
    assert client.delete(f"{IDS}/{a}", headers=h["analyst"]).status_code == 422
    r = client.delete(f"{IDS}/{a}", params={"reason": "GDPR erasure request 881"}, headers=h["analyst"])
    assert r.status_code == 200 and r.json() == {"id": a, "label": "fraudster A", "samples_removed": 1}
    res = client.post(IDENTIFY, headers=h["robot"], **upload(wav(FRAUD_A, 1))).json()
    assert res["alarm"] is False and [m["identity_id"] for m in res["matches"]] == [b]
    assert res["searched"] == 1
    assert client.get(f"{IDS}/{a}", headers=h["analyst"]).status_code == 404
    assert client.delete(f"{IDS}/{a}", params={"reason": "x"}, headers=h["analyst"]).status_code == 404
    log = client.get("/v1/audit", params={"target_type": "blacklist_identity", "target_id": str(a)},
                     headers=h["auditor"]).json()["entries"]
    actions = [(e["action"], e["actor"], e["reason"]) for e in log]
    assert actions[0] == ("blacklist.identity.delete", "analyst:test-analyst", "GDPR erasure request 881")
    assert ("blacklist.sample.add", "analyst:test-analyst", "") in actions
    assert ("blacklist.identity.create", "analyst:test-analyst", "") in actions


def test_openapi_documents_models(bapi: tuple[Any, dict[str, dict[str, str]]]) -> None:
    client, _ = bapi
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {"post", "get"} <= set(paths[IDS]) and {"get", "delete"} <= set(paths[f"{IDS}/{{identity_id}}"])
    ok = paths[IDENTIFY]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ok.endswith("/IdentifyOut")
    assert "multipart/form-data" in paths[f"{IDS}/{{identity_id}}/samples"]["post"]["requestBody"]["content"]
    assert {"413", "422", "404"} <= set(paths[IDENTIFY]["post"]["responses"])


def test_models_missing_is_503_and_nothing_is_written(api: tuple[Any, dict[str, dict[str, str]]],
                                                      tmp_path: Path) -> None:
    client, h = api
    ctx = client.app.state.ctx
    ctx.settings = ctx.settings.model_copy(update={"models_dir": tmp_path / "no-models"})
    r = client.post(IDENTIFY, headers=h["robot"], **upload(wav(FRAUD_A, 0)))
    assert r.status_code == 503 and r.json()["code"] == "encoder_missing"
    assert client.post(IDS, json={"label": "x"}, headers=h["analyst"]).status_code == 503
    assert client.get("/v1/audit", params={"target_type": "blacklist_identity"},
                      headers=h["auditor"]).json()["entries"] == []


def test_status_reports_the_in_domain_null(api: tuple[Any, dict[str, dict[str, str]]],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """CALLVET_OPENSET_IN_DOMAIN=1 with the shipped calibration: the status says whether the null of
    recent calls is active and, per tier, the calibration's threshold beside the one in force."""
    from callvet.voice.callprints import Applicant
    from callvet.voice.engine import Voiceprint

    monkeypatch.setenv("CALLVET_OPENSET_IN_DOMAIN", "1")
    client, h = api
    ctx = client.app.state.ctx
    eng = VoiceEngine.from_settings(Settings(openset_calibration=True))
    assert eng.calibration is not None and eng.calibration.cohort is not None
    ctx.service("voice", lambda _ctx: eng)
    create(client, h, "fraudster A", FRAUD_A)
    st = client.get("/v1/blacklist/status", headers=h["auditor"]).json()
    assert st["in_domain"]["enabled"] is True and st["in_domain"]["active"] is False
    assert st["identify"]["alarm"]["in_domain"] is None
    rng = np.random.default_rng(0)
    for i in range(50):
        v = eng.calibration.cohort[rng.integers(len(eng.calibration.cohort))].astype(np.float32)
        m, s = eng.backend.cohort_stats(v)
        ctx.callprints.upsert(f"call-{i}", Applicant(applicant_id=f"app-{i}"),
                              Voiceprint(v, (float(m), float(s)), 9.0))
    st = client.get("/v1/blacklist/status", headers=h["auditor"]).json()
    assert st["in_domain"]["active"] is True and st["in_domain"]["recent_calls"] == 50
    assert st["in_domain"]["identities"] == 1
    for tier in ("alarm", "review"):
        op = st["call"][tier]
        assert op["in_domain"]["recent_calls"] == 50 and op["threshold"] >= op["calibration_threshold"]
