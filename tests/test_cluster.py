"""Three replicas behind HAProxy on PostgreSQL (``callvet cluster``), one SIGKILLed mid-load and restarted.

A bounded mixed load goes through HAProxy: stored decisions and workflow starts (each with an
idempotency key; a client retries a failed attempt with the same key, as a bank's channel would) and
blacklist identify requests. Meanwhile a monitor asks every replica's ``/readyz`` and, right after each
answer, sends that replica a real decision: a 200 from ``/readyz`` must mean the replica serves. Checked
at the end, in the database: every accepted request is stored exactly once (none lost, none applied
twice), with the id the client was answered; the killed replica was restarted and is ready again.

Two live case calls (real WebSocket clients through HAProxy, which balances them by connection) stream
espeak speech of the blacklisted voice. The victim is the replica the first call's record says holds it
(audit ``call.start`` ``replica``), so at least one call dies with it; a call on the victim reconnects
through HAProxy with the same callSid and ``resume=true`` (docs/calls.md), lands on another replica and
finishes; a call elsewhere goes on, on its own socket. Each call stays one record, its speech adds up
across the kill, its case gets one result, and its ``call.ended`` event reaches NATS once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from callvet.core import auth
from callvet.core.db import Database
from callvet.core.tables import audit_log
from callvet.voice.call.tables import call_events, calls
from casecall import (
    ENROL,
    FIRST,
    SECOND,
    VOICE,
    call_id_of,
    case_wait,
    checkpoint_of,
    speech_8k,
    start_frame,
    stream_media,
)
from serverproc import free_port, wait_for
from speech import espeak, to_wav_bytes
from sqlalchemy import create_engine, select, text

PG_URL = os.environ.get("CALLVET_TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(not PG_URL,
                                reason="the cluster runs on PostgreSQL: set CALLVET_TEST_DATABASE_URL")

APP = json.loads((Path(__file__).parents[1] / "docs/contracts/application.example.json").read_text())
FRAUD = VOICE
PROBE = "I bought the card last spring and I use it for groceries and fuel every week."
N_DECISIONS, N_STARTS, N_IDENTIFY = 90, 9, 4


@dataclass
class Run:
    url: str
    db: Database
    run_dir: Path
    proc: subprocess.Popen[bytes]
    keys: dict[str, str]
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    retries: int = 0
    readiness: list[tuple[str, int, int, float]] = field(default_factory=list)  # replica, readyz, probe, at
    killed_at: float = 0.0
    #: The JetStream stream and subject root the replicas' outbox relays publish to (this run's own).
    stream: str = ""
    subject_root: str = ""

    def state(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "cluster.json").read_text())

    def replica_urls(self) -> dict[str, str]:
        return {r["name"]: f"http://127.0.0.1:{r['port']}" for r in self.state()["replicas"]}


def _schema_url(schema: str) -> str:
    assert PG_URL
    return f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Run]:
    schema = f"cluster_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL or "", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = _schema_url(schema)
    db = Database(url)
    db.create_schema()
    keys = {r: auth.create_key(db, r, f"cluster-{r}") for r in ("robot", "analyst")}
    port = free_port()
    env = {**os.environ, "CALLVET_DATABASE_URL": url, "CALLVET_DATA_DIR": str(tmp_path / "var"),
           "CALLVET_DRAIN_GRACE_S": "0.5", "OPENBLAS_NUM_THREADS": "1", "CALLVET_CALL_WORKERS": "1",
           # issue 17: every replica relays its outbox to the machine's NATS JetStream, into this run's stream
           "CALLVET_OUTBOX_BROKER": "nats", "CALLVET_NATS_STREAM": f"CL{schema[-10:]}",
           "CALLVET_NATS_SUBJECT_ROOT": f"cl{schema[-10:]}",
           # the live calls: no interview (speech only), every second embedded (exact speech sums)
           "CALLVET_CASES_INTERVIEWS": "0", "CALLVET_CALL_STABLE_RESCORE_S": "0", "CALLVET_SPOOF": "0"}
    base = free_port()
    with open(tmp_path / "cluster.err", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "callvet", "cluster", "--replicas", "3", "--port", str(port),
             "--base-port", str(base), "--run-dir", str(tmp_path / "run"), "--stop-timeout", "20"],
            env=env, stdout=subprocess.DEVNULL, stderr=err)
    run = Run(f"http://127.0.0.1:{port}", db, tmp_path / "run", proc, keys,
              stream=env["CALLVET_NATS_STREAM"], subject_root=env["CALLVET_NATS_SUBJECT_ROOT"])
    try:
        assert wait_for(lambda: (run.run_dir / "cluster.json").exists() or proc.poll() is not None, 90)
        urls = run.replica_urls()
        assert wait_for(lambda: all(_ready(u) for u in urls.values()) or proc.poll() is not None, 120), \
            (tmp_path / "cluster.err").read_text()
        # HAProxy puts a replica in rotation only after its own checks pass (rise 2 x 0.5 s)
        assert wait_for(lambda: _ready(run.url) or proc.poll() is not None, 60), \
            (tmp_path / "cluster.err").read_text()
        yield run
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
        db.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _dead(pid: int) -> bool:
    """Gone or a zombie: it writes nothing more."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def _send(run: Run, client: httpx.Client, kind: str, n: int) -> None:
    """One logical request, retried with the same idempotency key until it is accepted."""
    key = f"{kind}-{n}-{uuid.uuid4().hex[:8]}"
    hdr = {"Authorization": f"Bearer {run.keys['robot']}", "Idempotency-Key": key}
    for attempt in range(30):
        try:
            if kind == "decision":
                r = client.post("/v1/decisions", headers=hdr,
                                json={"application": {**APP, "application_id": f"CL-{n}"}})
            elif kind == "start":
                app = {**APP, "application_id": f"WF-{n}"}
                r = client.post("/v1/workflow/instances", headers=hdr,
                                json={"process_key": "card_issuance", "data": {"application": app}})
            else:
                r = client.post("/v1/voiceprint/identify", headers={"Authorization": hdr["Authorization"]},
                                files={"audio": ("probe.wav", IDENTIFY_WAV, "application/octet-stream")})
            if r.status_code in (200, 201):
                run.answers[f"{kind}:{n}"] = {**r.json(), "attempts": attempt + 1}
                return
            assert r.status_code in (502, 503, 504), (kind, r.status_code, r.text)
        except httpx.TransportError:
            pass
        run.retries += 1
        time.sleep(0.2)
    raise AssertionError(f"{kind} {n} was never accepted")


def _monitor(run: Run, stop: threading.Event) -> None:
    """/readyz of each replica, then at once a real decision on that same replica."""
    hdr = {"Authorization": f"Bearer {run.keys['analyst']}"}
    body = {"application": {**APP, "application_id": "MONITOR"}}
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            for name, url in run.replica_urls().items():
                try:
                    ready = client.get(f"{url}/readyz").status_code
                except httpx.TransportError:
                    ready = 0
                if ready == 200:
                    try:
                        probe = client.post(f"{url}/v1/decisions", headers=hdr, json=body).status_code
                    except httpx.TransportError:
                        probe = 0
                    run.readiness.append((name, ready, probe, time.monotonic()))
                else:
                    run.readiness.append((name, ready, -1, time.monotonic()))
            time.sleep(0.25)


IDENTIFY_WAV = b""


@dataclass
class LiveCall:
    """One case call of the load: its claim, where it ran, what the robot heard on each socket."""
    sid: str
    case_id: str
    params: dict[str, Any]
    path: str
    call_id: str = ""
    replica: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    resumed: list[dict[str, Any]] = field(default_factory=list)
    carried: float = 0.0
    #: Set once the first half is all sent: the kill comes after it (a robot cut mid-send is not tested).
    sent: threading.Event = field(default_factory=threading.Event)


def _open_calls(run: Run, client: httpx.Client) -> list[LiveCall]:
    """Two cases that want a call, each claimed by the robot (the claim carries the stream URL)."""
    from urllib.parse import urlparse

    from decision_fixtures import example

    robot = {"Authorization": f"Bearer {run.keys['robot']}"}
    out = []
    for n in range(2):
        app = example(application_id=f"CALL-{n}", risk_reasons=["new_device", "address_mismatch"])
        r = client.post("/v1/applications", headers=robot, json={
            "application": app, "call_window": {"timezone": "UTC", "start_hour": 0, "end_hour": 24}})
        assert r.status_code == 201, r.text
        claim = client.post("/v1/robot/calls:claim", headers=robot)
        assert claim.status_code == 200, claim.text
        body = claim.json()
        out.append(LiveCall(f"CA-CL{n}", r.json()["case_id"], body["custom_parameters"],
                            urlparse(body["stream_url"]).path))
    return out


def _replica_of(run: Run, call_id: str) -> str:
    """The replica holding the call, as its record says (audit ``call.start``)."""
    with run.db.connect() as conn:
        details = conn.execute(select(audit_log.c.details).where(
            audit_log.c.action == "call.start", audit_log.c.target_id == call_id)).scalar()
    return str((details or {}).get("replica", ""))


def _calls(run: Run, live: list[LiveCall], killed: threading.Event, victim: dict[str, str],
           ref: list[dict[str, Any]]) -> None:
    """The robot side of both calls: the first half through HAProxy, a wait for the kill, then the second
    half on the same socket or, when the call's replica was the one killed, on a resumed stream."""
    import asyncio

    import websockets

    ws_url = run.url.replace("http://", "ws://")
    first, second = speech_8k(FIRST), speech_8k(SECOND)

    def after_kill(c: LiveCall) -> bool:
        c.sent.set()
        assert killed.wait(180), "the replica was never killed"
        return c.replica != victim["name"]

    async def connected(what: str, events: list[dict[str, Any]], **kw: Any) -> None:
        """``stream_media`` through HAProxy, again while the handshake fails: just after the kill HAProxy
        may still pick the dead replica (it redispatches, 3 retries) or answer 503 at once."""
        for _ in range(40):
            events.clear()
            try:
                await stream_media(**kw, events=events)
            except (OSError, websockets.InvalidHandshake):
                await asyncio.sleep(0.25)
                continue
            return
        raise AssertionError(f"{what}: never connected")

    async def one(c: LiveCall) -> None:
        await stream_media(ws_url + c.path, start_frame(c.params, c.sid), first, events=c.events,
                           until=lambda: after_kill(c), more=second)
        if c.replica == victim["name"]:
            await connected(f"resume of {c.sid}", c.resumed, url=ws_url + c.path,
                            start=start_frame({**c.params, "resume": "true"}, c.sid), audio=second)

    async def reference() -> None:
        """The same second half alone, as a new call: what it measures by itself."""
        await asyncio.to_thread(killed.wait, 180)
        await connected("the reference call", ref, url=f"{ws_url}/v1/calls/stream",
                        start=start_frame({}, "CA-CLREF"), audio=second,
                        headers={"Authorization": f"Bearer {run.keys['robot']}"})

    async def main() -> None:
        await asyncio.gather(*(one(c) for c in live), reference())

    asyncio.run(main())


@pytest.mark.timeout(300)
def test_replica_killed_mid_load_loses_nothing(cluster: Run) -> None:
    global IDENTIFY_WAV
    run = cluster
    analyst = {"Authorization": f"Bearer {run.keys['analyst']}"}
    with httpx.Client(base_url=run.url, timeout=60) as client:
        ident = client.post("/v1/blacklist/identities", headers=analyst, json={"label": "ring", "notes": "t"})
        assert ident.status_code == 201, ident.text
        enrol = client.post(f"/v1/blacklist/identities/{ident.json()['id']}/samples", headers=analyst,
                            files={"audio": ("e.wav", to_wav_bytes(espeak(ENROL, FRAUD), 16000),
                                             "application/octet-stream")})
        assert enrol.status_code == 201, enrol.text
        live = _open_calls(run, client)
    IDENTIFY_WAV = to_wav_bytes(espeak(PROBE, FRAUD), 16000)

    # the calls first: the victim is the replica holding the first one, once both have a checkpoint
    killed = threading.Event()
    victim: dict[str, Any] = {"name": ""}
    ref: list[dict[str, Any]] = []
    failed: list[BaseException] = []

    def robot() -> None:
        try:
            _calls(run, live, killed, victim, ref)
        except BaseException as exc:  # re-raised in the test thread
            import traceback
            failed.append(AssertionError("".join(traceback.format_exception(exc)) + repr(
                [(c.sid, c.replica, c.events[-3:], c.resumed[-3:]) for c in live])))

    calling = threading.Thread(target=robot, daemon=True)
    calling.start()

    def checkpointed() -> bool:
        for c in live:
            c.call_id = c.call_id or (call_id_of(run.db, c.sid) or "")
            ck = checkpoint_of(run.db, c.call_id) if c.call_id else None
            if not ck or ck["voice"]["net_speech_s"] < 6.0 or not c.sent.is_set():
                return False
        return True

    assert wait_for(lambda: checkpointed() or bool(failed), 120), "the calls never checkpointed"
    assert not failed, failed
    for c in live:
        c.replica = _replica_of(run, c.call_id)
    victim.update(next(r for r in run.state()["replicas"] if r["name"] == live[0].replica))

    work = [("decision", i) for i in range(N_DECISIONS)] + [("start", i) for i in range(N_STARTS)] + \
        [("identify", i) for i in range(N_IDENTIFY)]
    work.sort(key=lambda w: (w[1] * 1000 // {"decision": N_DECISIONS, "start": N_STARTS,
                                             "identify": N_IDENTIFY}[w[0]], w[0]))
    stop = threading.Event()
    monitor = threading.Thread(target=_monitor, args=(run, stop), daemon=True)
    monitor.start()

    def task(item: tuple[str, int]) -> None:
        if item == ("decision", N_DECISIONS // 3) and not killed.is_set():
            run.killed_at = time.monotonic()
            os.kill(victim["pid"], signal.SIGKILL)
            assert wait_for(lambda: _dead(victim["pid"]), 10)
            for c in live:  # what the victim's calls carry over: their last checkpoint (no resume yet)
                c.carried = (checkpoint_of(run.db, c.call_id) or {})["voice"]["net_speech_s"]
            killed.set()
        with httpx.Client(base_url=run.url, timeout=60) as client:
            _send(run, client, *item)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(task, work))
    assert killed.is_set()
    calling.join(timeout=180)
    assert not calling.is_alive() and not failed, failed
    restarted = wait_for(lambda: next(r for r in run.state()["replicas"] if r["name"] == victim["name"])
                         ["starts"] == 2 and _ready(run.replica_urls()[victim["name"]]), 90)
    stop.set()
    monitor.join(timeout=30)
    assert restarted, "the killed replica was not restarted and ready again"

    _check_stored(run)
    _check_readiness(run, victim["name"])
    _check_calls(run, live, victim["name"], ref)
    msgs = check_outbox(run)
    ended = [m["aggregate_id"] for m in msgs if m["subject"] == "callvet.call.ended"]
    for c in live:
        assert ended.count(c.call_id) == 1, (c.sid, ended)


def _check_calls(run: Run, live: list[LiveCall], victim: str, ref: list[dict[str, Any]]) -> None:
    """At least one call died with the victim and resumed elsewhere; each is one record whose speech and
    voiceprint add up across the kill, and each case got one result."""
    resumed = [c for c in live if c.replica == victim]
    assert resumed, [c.replica for c in live]
    ref_id = call_id_of(run.db, "CA-CLREF")
    with run.db.connect() as conn:
        ref_row = conn.execute(select(calls).where(calls.c.id == ref_id)).one()
    assert ref_row.net_speech_s > 3.0
    analyst = {"Authorization": f"Bearer {run.keys['analyst']}"}
    with httpx.Client(base_url=run.url, timeout=60) as client:
        for c in live:
            with run.db.connect() as conn:
                rows = conn.execute(select(calls).where(calls.c.call_sid == c.sid)).all()
                kinds = conn.execute(select(call_events.c.kind, call_events.c.data).where(
                    call_events.c.call_id == c.call_id).order_by(call_events.c.id)).all()
            assert len(rows) == 1 and rows[0].id == c.call_id, [r.id for r in rows]
            row = rows[0]
            final = row.stats["final_verdict"]
            assert row.state == "stopped" and final["alarm"] is True, (row.state, final)
            case = case_wait(client, analyst, c.case_id, ("review", "declined", "issued"))
            timeline = [e["kind"] for e in case["timeline"]]
            assert case["call_ids"] == [c.call_id] and timeline.count("call_ended") == 1, timeline
            if c not in resumed:
                assert row.epoch == 0 and timeline.count("call_resumed") == 0
                continue
            started = [e for e in c.resumed if e["event"] == "callvet.started"]
            assert started and started[0]["call_id"] == c.call_id, c.resumed[:3]
            assert started[0]["resumed"]["net_speech_s"] == round(c.carried, 3)
            on = [d["replica"] for k, d in kinds if k == "resumed"]
            assert row.epoch == 1 and len(on) == 1 and on[0] != victim, (row.epoch, on)
            assert timeline.count("call_resumed") == 1, timeline
            # the checkpoint before the kill plus what the second half measures alone (the tolerance:
            # how much speech reaches the scorer depends on the batching on a busy machine)
            assert abs(row.net_speech_s - (c.carried + ref_row.net_speech_s)) < 1.0, \
                (row.net_speech_s, c.carried, ref_row.net_speech_s)
            # the voiceprint kept accumulating: it holds more than either half alone
            alone = ref_row.stats["final_verdict"]["net_speech_s"]
            assert final["net_speech_s"] > max(c.carried, alone) + 3.0, (final, c.carried, alone)


def _check_stored(run: Run) -> None:
    with run.db.connect() as conn:
        decisions = conn.execute(text("SELECT application_id, decision_id FROM decision_records "
                                      "WHERE application_id LIKE 'CL-%'")).all()
        starts = [r for r in conn.execute(text("SELECT id, data FROM wf_instances")).all()
                  if r.data["application"]["application_id"].startswith("WF-")]  # not the cases' own
    by_app: dict[str, list[str]] = {}
    for app_id, did in decisions:
        by_app.setdefault(app_id, []).append(did)
    assert len(decisions) == N_DECISIONS, f"{len(decisions)} stored for {N_DECISIONS} accepted"
    for i in range(N_DECISIONS):
        assert by_app.get(f"CL-{i}") == [run.answers[f"decision:{i}"]["decision_id"]], i
    assert len(starts) == N_STARTS
    assert {r.id for r in starts} == {run.answers[f"start:{i}"]["instance_id"] for i in range(N_STARTS)}
    for i in range(N_IDENTIFY):
        assert run.answers[f"identify:{i}"]["matches"], "identify answered without the enrolled print"


def _check_readiness(run: Run, victim: str) -> None:
    """Ready meant serving, for every replica at every probe; the victim was seen down, then ready.

    A probe of the victim that fails just after the kill (a "ready" answered before it, the probe after
    it) is the kill itself, not a lie, and is not counted."""
    wrong = [(name, probe) for name, ready, probe, at in run.readiness if ready == 200 and probe != 200
             and not (name == victim and probe == 0 and 0 <= at - run.killed_at < 2.0)]
    assert not wrong, f"/readyz said 200 but the replica did not serve: {wrong[:5]}"
    seen = [ready for name, ready, _, _ in run.readiness if name == victim]
    assert 200 in seen and any(s != 200 for s in seen), seen
    assert seen[-1] == 200


def check_outbox(run: Run) -> list[dict[str, Any]]:
    """Every outbox event reaches the broker exactly once after de-duplication (issue 17): the replicas'
    relays (one per replica, SKIP LOCKED on PostgreSQL; one was SIGKILLed mid-load) drain the table, the
    stream holds each event id once, and every accepted decision and workflow start has its event."""
    import asyncio

    import nats
    from callvet.core.outbox import pending_count
    from callvet.core.tables import outbox

    assert wait_for(lambda: pending_count(run.db) == 0, 90), f"{pending_count(run.db)} events not relayed"

    async def stored() -> list[dict[str, Any]]:
        nc = await nats.connect("nats://127.0.0.1:4222")
        try:
            js = nc.jetstream()
            info = await js.stream_info(run.stream)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(run.stream, seq)
                out.append({**json.loads(msg.data), "msg_id": msg.headers["Nats-Msg-Id"]})
            await js.delete_stream(run.stream)
            return out
        finally:
            await nc.close()

    msgs = asyncio.run(stored())
    ids = [m["msg_id"] for m in msgs]
    assert len(ids) == len(set(ids)) and all(m["event_id"] == m["msg_id"] for m in msgs)
    with run.db.connect() as conn:
        written = set(conn.execute(select(outbox.c.event_id)).scalars())
    assert set(ids) == written, (len(ids), len(written))
    decided = [m["aggregate_id"] for m in msgs if m["subject"] == "callvet.decision.created"]
    started = [m["aggregate_id"] for m in msgs if m["subject"] == "callvet.workflow.instance.started"]
    for key, answer in run.answers.items():
        if key.startswith("decision:"):
            assert decided.count(answer["decision_id"]) == 1, (key, answer)
        elif key.startswith("start:") and answer.get("instance_id"):
            assert started.count(answer["instance_id"]) == 1, (key, answer)
    return msgs
