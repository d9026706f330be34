from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from callvet.sim.calls import mulaw_encode
from callvet.voice.call.frames import (
    AudioFrame,
    ClientEventFrame,
    DtmfFrame,
    MarkFrame,
    StartFrame,
    StopFrame,
)
from callvet.voice.call.serializers import (
    ForkSerializer,
    JitterBuffer,
    ProtocolError,
    TwilioSerializer,
    mulaw_to_float,
    serializer_for,
)


def _start(**fmt: object) -> str:
    media = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1, **fmt}
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": "MZ9", "start": {
        "streamSid": "MZ9", "callSid": "CA9", "tracks": ["inbound"], "mediaFormat": media,
        "customParameters": {"application_id": "app-1", "language": "ro"}}})


def _media(chunk: int, x: np.ndarray | None = None, track: str = "inbound") -> str:
    x = np.full(160, chunk / 1000, np.float32) if x is None else x
    return json.dumps({"event": "media", "media": {"track": track, "chunk": str(chunk),
                       "timestamp": str(chunk * 20), "payload": base64.b64encode(mulaw_encode(x)).decode()}})


def test_mulaw_round_trip_is_g711_accurate() -> None:
    x = np.sin(np.linspace(0, 60, 8000)).astype(np.float32) * 0.8
    y = mulaw_to_float(mulaw_encode(x))
    assert np.max(np.abs(y - x)) < 0.03
    assert mulaw_encode(np.zeros(4)) == b"\xff" * 4


def test_twilio_messages_become_frames() -> None:
    s = TwilioSerializer()
    assert s.text(json.dumps({"event": "connected", "protocol": "Call"})) == []
    (start,) = s.text(_start())
    assert isinstance(start, StartFrame)
    assert (start.stream_id, start.call_sid) == ("MZ9", "CA9")
    assert (start.application_id, start.language) == ("app-1", "ro")
    (audio,) = s.text(_media(1))
    assert isinstance(audio, AudioFrame) and audio.sample_rate == 8000 and len(audio.samples) == 160
    assert audio.samples[0] == pytest.approx(1 / 1000, abs=2e-4) and audio.n_samples == 160
    assert s.text(_media(2, track="outbound")) == [] and s.outbound_frames == 1
    assert s.text(json.dumps({"event": "mark", "mark": {"name": "q1"}})) == [MarkFrame("q1")]
    assert s.text(json.dumps({"event": "dtmf", "dtmf": {"digit": "5"}})) == [DtmfFrame("5")]
    (q,) = s.text(json.dumps({"event": "callvet.question", "question_id": "q1", "text": "Where?"}))
    assert isinstance(q, ClientEventFrame) and q.data["question_id"] == "q1"
    echo = json.loads(s.outbound_mark("q1") or "")
    assert echo == {"event": "mark", "streamSid": "MZ9", "mark": {"name": "q1"}}
    assert s.text(json.dumps({"event": "stop"}))[-1] == StopFrame("stop")


@pytest.mark.parametrize(
    ("msg", "code", "close"),
    [
        ("nope", "bad_json", None),
        ("[1]", "bad_json", None),
        (json.dumps({"event": "weird"}), "unknown_event", None),
        (json.dumps({"event": "media", "media": {"payload": "AAAA"}}), "media_before_start", None),
        (_start(sampleRate=16000), "unsupported_format", 1003),
        (_start(encoding="audio/x-alaw"), "unsupported_format", 1003),
        (json.dumps({"event": "start", "start": 5}), "bad_start", 1007),
    ],
)
def test_twilio_bad_messages(msg: str, code: str, close: int | None) -> None:
    with pytest.raises(ProtocolError) as e:
        TwilioSerializer().text(msg)
    assert (e.value.code, e.value.close_code) == (code, close)


def test_twilio_bad_media_after_start() -> None:
    s = TwilioSerializer()
    s.text(_start())
    cases = [
        ({"payload": "!!!"}, "bad_payload", None),
        ({"payload": 7}, "bad_payload", None),
        ({"payload": base64.b64encode(bytes(9000)).decode(), "chunk": "1"}, "frame_too_large", 1009),
        ({"payload": "AAAA"}, "bad_media", None),
    ]
    for media, code, close in cases:
        with pytest.raises(ProtocolError) as e:
            s.text(json.dumps({"event": "media", "media": media}))
        assert (e.value.code, e.value.close_code) == (code, close)
    with pytest.raises(ProtocolError) as e:
        s.text(_start())
    assert e.value.code == "duplicate_start" and e.value.close_code == 1008
    with pytest.raises(ProtocolError) as e:
        s.binary(b"\x00")
    assert e.value.close_code == 1003


def test_twilio_reorders_within_jitter_window() -> None:
    s = TwilioSerializer(jitter_depth=4)
    s.text(_start())
    order = [1, 3, 2, 5, 4, 6, 8, 7]
    out = [f for c in order for f in s.text(_media(c))]
    out += s.finish()
    assert [f.seq for f in out] == sorted(order)
    assert s.jitter.reordered > 0 and s.jitter.lost == 0


def test_jitter_buffer_gives_up_on_lost_frames_and_drops_late_ones() -> None:
    jb = JitterBuffer(depth=3)
    frame = b"\x11" * 160
    got = []
    for seq in [1, 2, 4, 5, 6]:  # 3 never comes
        got += jb.push(seq, frame)
    assert [s for s, _, _ in got] == [1, 2]
    assert jb.push(6, frame) == [] and jb.duplicates == 1
    got += jb.push(7, frame)  # a fourth frame held: 3 is given up
    assert [s for s, _, _ in got] == [1, 2, 3, 4, 5, 6, 7]
    assert got[2][2] is True and got[2][1] == b"\xff" * 160  # mu-law silence: audio time stays true
    assert jb.push(3, frame) == [] and jb.late == 1
    assert jb.lost == 1 and jb.flush() == []


def test_fork_metadata_then_pcm() -> None:
    s = ForkSerializer()
    with pytest.raises(ProtocolError) as e:
        s.binary(bytes(320))
    assert e.value.code == "media_before_start"
    (start,) = s.text(json.dumps({"uuid": "fs-1", "sampleRate": 16000, "application_id": "a9"}))
    assert isinstance(start, StartFrame) and start.sample_rate == 16000 and start.application_id == "a9"
    pcm = (np.arange(320) - 160).astype("<i2").tobytes()
    (audio,) = s.binary(pcm)
    assert isinstance(audio, AudioFrame) and audio.samples[0] == pytest.approx(-160 / 32768)
    with pytest.raises(ProtocolError) as e:
        s.binary(b"\x00\x01\x02")
    assert e.value.code == "bad_payload" and e.value.close_code is None
    with pytest.raises(ProtocolError) as e:
        s.binary(bytes(2 * 16000 + 2))
    assert e.value.close_code == 1009
    assert s.text(json.dumps({"event": "stop"})) == [StopFrame("stop")]


@pytest.mark.parametrize("meta", [{"sampleRate": 44100}, {}, {"sampleRate": 8000, "encoding": "mulaw"}])
def test_fork_rejects_unsupported_formats(meta: dict[str, object]) -> None:
    with pytest.raises(ProtocolError) as e:
        ForkSerializer().text(json.dumps(meta))
    assert e.value.close_code == 1003


def test_unknown_protocol() -> None:
    with pytest.raises(Exception, match="unknown call protocol"):
        serializer_for("sip")
