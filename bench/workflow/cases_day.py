"""A day of card applications end to end through cases: intake, pre-screen, the call queue and simulated
call robots, the interview, the call-end outbox and pump, the investigation decision, approvers' tasks.

    .venv/bin/python bench/workflow/cases_day.py --n 2000              # a measured fraction
    .venv/bin/python bench/workflow/cases_day.py --n 100000            # the whole day (long)

What runs, all in this process on one database (SQLite file by default, ``--db`` for PostgreSQL):
``CaseService.create`` for every application (validated, pre-screened by the real decision engine,
started in ``card_issuance``; flagged ones queued for a call). ``--robots`` threads play call robots: they
claim (leased, with a one-time token; a robot with nothing to dial claims again after ``--robot-poll-s``),
10% do not connect (``no_answer``/``busy``: back-off on a clock running ``--clock`` times real time),
the rest join the stream with the token (``admit_stream``, what the call server does at ``start``),
run the real interview (real ``InterviewService`` and questionnaire scoring, answers from the
questionnaire simulator's genuine applicants, 15% guessers), and end the call with
simulated voiceprint verdicts (4% confirmed alarms, 2% review-tier hits, 1% spoof flags) through
``record_call_end``, the same durable write the call observer makes. The pump thread delivers results to
the workflows. ``--approvers`` threads complete review tasks through the task forms (85% approve).

Not simulated away: the database, the workflow engine, the decision engine, the interview store.
Simulated: the telephony and the audio (no VAD/voiceprint inference: that is bench/calls).

Peer (same run): the same ``card_issuance`` BPMN run by SpiffWorkflow in memory with the same decider,
nothing persisted (bench/workflow/run.py's peer). Ratio = cases end to end / in-memory workflow.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from callvet.cases.service import CaseService
from callvet.cases.tables import case_events, cases
from callvet.core.application import Application
from callvet.core.db import Database
from callvet.core.errors import CallvetError, Conflict
from callvet.decision.tables import decision_records
from callvet.sim.workflow import application
from callvet.workflow.engine import WorkflowRuntime
from callvet.workflow.tables import wf_events, wf_issuances, wf_tasks
from sqlalchemy import func, select

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import _decider, peer_in_memory  # noqa: E402


class SimClock:
    """UTC now, running ``speed`` times faster than the wall clock (back-offs pass in seconds)."""

    def __init__(self, speed: float) -> None:
        self.t0 = datetime.now(UTC)
        self.w0 = time.monotonic()
        self.speed = speed

    def __call__(self) -> datetime:
        return self.t0 + timedelta(seconds=(time.monotonic() - self.w0) * self.speed)


def _verdicts(rng: random.Random) -> list[dict[str, Any]]:
    u = rng.random()
    if u < 0.04:
        return [{"alarm": True, "net_speech_s": 9.0, "matches": [{"identity_id": 7, "score": 0.82}]}]
    if u < 0.06:
        return [
            {
                "alarm": True,
                "review": True,
                "net_speech_s": 9.0,
                "matches": [{"identity_id": 9, "score": 0.61}],
            }
        ]
    if u < 0.07:
        return [
            {
                "alarm": False,
                "net_speech_s": 9.0,
                "matches": [],
                "spoof": {"score": 0.93, "flag": True, "kind": "synthetic"},
            }
        ]
    return [{"alarm": False, "net_speech_s": 9.0, "matches": []}]


def _review(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.85:
        return {
            "review_decision": "approve",
            "documents": ["id_card", "income_proof"],
            "review_note": "Identity and income verified against the documents on file.",
        }
    return {"review_decision": "decline", "review_note": "Could not verify the applicant."}


def _setup(url: str, args: argparse.Namespace) -> None:
    db = Database(url)
    db.create_schema()
    rt = WorkflowRuntime(db, decide=_decider("scripted", db))
    rt.ensure_ready()
    for k in range(args.approvers):
        rt.board.upsert_user(
            f"appr-{k:02d}",
            role="approver",
            skills=["card"],
            max_amount=200000,
            name=f"Approver {k}",
            actor="bench",
        )
    for k in range(2):
        rt.board.upsert_user(
            f"risk-{k:02d}", role="risk_officer", skills=["card"], name=f"Risk {k}", actor="bench"
        )
    db.dispose()


def _replica(p: int, procs: int, args: argparse.Namespace, url: str, stop: Any, out: Any) -> None:
    """One service replica (its own process, engine, pool and pump shard) on the shared database: its
    share of the intake (applications ``p`` mod ``procs``), robots, approvers and one pump shard."""
    from callvet.questionnaire.service import InterviewService
    from callvet.sim.questionnaire import GenuineApplicant, Guesser

    db = Database(url)
    rt = WorkflowRuntime(db, decide=_decider(args.decider, db))
    rt.ensure_ready()
    interviews = InterviewService(db, use_encoder=False)
    clock = SimClock(args.clock)
    svc = CaseService(db, lambda: rt, lambda: interviews, clock=clock)
    rt.add_finish_hook(svc.workflow_finished)  # as the composition root wires it
    stats: Counter[str] = Counter()
    lock = threading.Lock()
    errors: list[str] = []
    n_appr = args.approvers_threads * procs

    def count(key: str, n: int = 1) -> None:
        with lock:
            stats[key] += n

    window = {"timezone": "UTC", "start_hour": 0, "end_hour": 24}

    def intake(k: int, step: int) -> None:
        for i in range(k, args.n, step):
            app = application(i)
            try:
                _case, created = svc.create({"application": app, "call_window": window}, actor="robot:intake")
                count("created" if created else "resubmitted")
                if i % 50 == 0:  # channels resubmit now and then: same case back
                    _, again = svc.create({"application": app}, actor="robot:intake")
                    count("resubmit_new" if again else "resubmitted")
            except CallvetError as exc:
                errors.append(f"intake {i}: {exc.message}")
        count("intake_threads_done")

    def robot(k: int) -> None:
        name = f"robot:sim-{p}-{k}"
        rng = random.Random(args.seed * 1000 + p * 100 + k)
        while not stop.is_set():
            try:
                claim = svc.claim(name)
            except CallvetError as exc:
                errors.append(f"claim: {exc.message}")
                continue
            if claim is None:
                time.sleep(args.robot_poll_s)
                continue
            count("claims")
            if rng.random() < 0.10:
                try:
                    svc.report_outcome(
                        claim["call_request_id"],
                        rng.choice(["no_answer", "busy"]),
                        lease_version=claim["lease_version"],
                        robot=name,
                    )
                    count("not_connected")
                except Conflict:
                    count("lease_lost")
                continue
            call_id = uuid.uuid4().hex
            params = claim["custom_parameters"]
            try:
                svc.admit_stream(call_id, params)
            except CallvetError:
                count("stale_token")  # this robot was too slow: its lease ran out and another claimed it
                continue
            iid = params.get("interview_id")
            if iid:
                app = Application.model_validate(_application_of(db, claim["case_id"]))
                caller = (Guesser if rng.random() < 0.15 else GenuineApplicant)(
                    app, random.Random(rng.random())
                )
                view = interviews.get(iid, include_answers=False)
                for _ in range(40):
                    if view.get("state") != "asking":
                        break
                    q = view["question"]
                    reply = caller.respond(q)
                    view = interviews.answer(
                        iid,
                        q["question_id"],
                        reply["transcript"],
                        timing=reply["timing"],
                        prosody=reply["prosody"],
                        actor=name,
                    )
                count("interviews")
            svc.record_call_end(claim["case_id"], call_id, reason="stop", verdicts=_verdicts(rng))
            count("calls")

    def approver(k: int) -> None:
        rng = random.Random(args.seed * 7000 + k)
        while not stop.is_set():
            tasks = rt.board.list_open(role=None, assignee=None, limit=50)
            mine = [t for t in tasks if int(t["task_id"].replace("-", "")[-4:], 16) % n_appr == k]
            if not mine:
                time.sleep(args.approver_poll_s)
                continue
            for t in mine:
                try:
                    rt.complete_task(
                        t["task_id"],
                        _review(rng),
                        actor=f"approver:appr-{k % args.approvers:02d}",
                        role=None,
                        reviewer_id=t["assignee"] or f"appr-{k % args.approvers:02d}",
                    )
                    count("tasks_completed")
                except (Conflict, CallvetError):
                    count("task_conflicts")

    svc.start_pump(interval_s=0.2, shard=(p, procs))
    step = args.intake * procs
    threads = [
        threading.Thread(target=intake, args=(p + procs * k, step), daemon=True) for k in range(args.intake)
    ]
    workers = [threading.Thread(target=robot, args=(k,), daemon=True) for k in range(args.robots)]
    workers += [
        threading.Thread(target=approver, args=(p * args.approvers_threads + k,), daemon=True)
        for k in range(args.approvers_threads)
    ]
    for t in threads + workers:
        t.start()
    for t in threads:
        t.join()
    out.put(("intake_done", p, time.time()))
    stop.wait()
    for t in workers:
        t.join(30)
    svc.close()
    out.put(("done", p, dict(stats), errors))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import multiprocessing as mp

    tmp = Path(tempfile.mkdtemp(prefix="callvet-cases-bench-"))
    url = args.db or f"sqlite:///{tmp / 'bench.db'}"
    _setup(url, args)
    db = Database(url)
    rt = WorkflowRuntime(db, decide=_decider(args.decider, db))
    rt.ensure_ready()
    svc = CaseService(db, lambda: rt, None)

    peer_n = max(200, min(1000, args.n // 10))
    peer = peer_in_memory(peer_n, _decider(args.decider, db), args.seed)

    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    out = ctx.Queue()
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    w0 = time.time()
    procs = [ctx.Process(target=_replica, args=(p, args.procs, args, url, stop, out), daemon=True)
             for p in range(args.procs)]
    for pr in procs:
        pr.start()
    intake_at: list[float] = []
    deadline = time.monotonic() + args.max_s
    progress = time.monotonic()
    while time.monotonic() < deadline:
        while not out.empty():
            msg = out.get()
            if msg[0] == "intake_done":
                intake_at.append(msg[2] - w0)
        by = svc.counts()
        open_ = sum(v for s, v in by.items() if s not in ("issued", "declined", "failed", "review"))
        review_open = by.get("review", 0)
        if open_ == 0 and review_open:
            with db.connect() as conn:
                for (cid,) in conn.execute(select(cases.c.case_id).where(cases.c.status == "review")).all():
                    svc.get(cid, timeline=False)
            by = svc.counts()
            review_open = by.get("review", 0)
        if len(intake_at) == args.procs and open_ == 0 and review_open == 0:
            break
        if args.progress_s and time.monotonic() - progress > args.progress_s:
            progress = time.monotonic()
            print(f"[{time.perf_counter() - t0:7.0f} s] load {os.getloadavg()[0]:.1f} {dict(by)}",
                  file=sys.stderr, flush=True)
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()
    stop.set()
    stats: Counter[str] = Counter()
    errors: list[str] = []
    for _ in procs:
        msg = out.get(timeout=120)
        while msg[0] != "done":
            msg = out.get(timeout=120)
        stats.update(msg[2])
        errors.extend(msg[3])
    for pr in procs:
        pr.join(30)
    intake_s = max(intake_at) if intake_at else float("nan")

    with db.connect() as conn:
        statuses = dict(conn.execute(select(cases.c.status, func.count()).group_by(cases.c.status)).all())
        ev = Counter(
            (r.case_id, r.kind)
            for r in conn.execute(
                select(case_events.c.case_id, case_events.c.kind).where(
                    case_events.c.kind.in_(["call_ended", "decided", "unreachable"])
                )
            ).all()
        )
        pending = conn.execute(
            select(func.count())
            .select_from(case_events)
            .where(
                case_events.c.kind.in_(["call_ended", "unreachable"]), case_events.c.delivered_at.is_(None)
            )
        ).scalar_one()
        msgs = Counter(
            r.instance_id
            for r in conn.execute(
                select(wf_events.c.instance_id).where(wf_events.c.kind == "message.received")
            ).all()
        )
        issues = Counter(r.instance_id for r in conn.execute(select(wf_issuances.c.instance_id)).all())
        n_cases = conn.execute(select(func.count()).select_from(cases)).scalar_one()
        n_decisions = conn.execute(  # the peer's in-memory run stores its own as actor "bench"
            select(func.count()).select_from(decision_records).where(decision_records.c.actor != "bench")
        ).scalar_one()
        review_tasks = Counter(
            (r.instance_id, r.element)
            for r in conn.execute(select(wf_tasks.c.instance_id, wf_tasks.c.element)).all()
        )
    called = {c for (c, k) in ev if k in ("call_ended", "unreachable")}
    integrity = {
        "one_case_per_application": n_cases == args.n and stats["resubmit_new"] == 0,
        "all_settled": set(statuses) <= {"issued", "declined"},
        "nothing_pending": pending == 0,
        "one_result_per_called_case": all(
            ev[(c, "call_ended")] + ev[(c, "unreachable")] == 1 for c in called
        ),
        "one_decision_per_called_case": all(ev[(c, "decided")] == 1 for c in called),
        "one_message_per_instance": set(msgs.values()) <= {1} and len(msgs) == len(called),
        "one_issuance_per_card": set(issues.values()) <= {1},
        "final_states_add_up": sum(statuses.values()) == args.n,
        "one_decision_record_per_decision": n_decisions == args.n + len(called),
        "no_duplicate_tasks": set(review_tasks.values()) <= {1},
        "no_errors": not errors,
    }
    rate = args.n / wall
    return {
        "n": args.n,
        "db": url.split(":")[0],
        "wall_s": wall,
        "intake_s": intake_s,
        "cases_per_s": rate,
        "peer_per_s": peer,
        "peer_n": peer_n,
        "ratio": rate / peer,
        "day_hours": 100000 / rate / 3600,
        "statuses": statuses,
        "stats": dict(stats),
        "integrity": integrity,
        "errors": errors[:10],
        "called": len(called),
        "load": (load0, load1),
        "args": vars(args),
    }


def _application_of(db: Database, case_id: str) -> dict[str, Any]:
    with db.connect() as conn:
        return conn.execute(select(cases.c.application).where(cases.c.case_id == case_id)).scalar_one()  # type: ignore[no-any-return]


def render(r: dict[str, Any]) -> str:
    a = r["args"]
    ok = all(r["integrity"].values())
    s = r["stats"]
    return (
        "\n".join(
            [
                "# Cases end to end: a day of applications (bench/workflow/cases_day.py)",
                "",
                f"`bench/workflow/cases_day.py --n {r['n']} --procs {a['procs']} --robots {a['robots']} "
                f"--approvers-threads {a['approvers_threads']} --decider {a['decider']}`, "
                f"{platform.machine()} Python {platform.python_version()}, {os.cpu_count()} CPUs shared "
                f"with other engineers' jobs (load average 1/5/15 min at start "
                f"{'/'.join(f'{x:.1f}' for x in r['load'][0])}, at end "
                f"{'/'.join(f'{x:.1f}' for x in r['load'][1])}), {r['db']} database, {a['procs']} service "
                f"replica process(es), each with {a['intake']} intake, {a['robots']} robot and "
                f"{a['approvers_threads']} approver threads and a pump shard.",
                "",
                "| measure | value |",
                "|---|---:|",
                f"| applications (cases) | {r['n']:,} |",
                f"| end-to-end wall time, s (intake alone) | {r['wall_s']:.1f} ({r['intake_s']:.1f}) |",
                f"| cases settled per second (end to end) | {r['cases_per_s']:.1f} |",
                f"| peer: in-memory SpiffWorkflow, instances/s ({r['peer_n']}) | {r['peer_per_s']:.1f} |",
                f"| ratio cases / in-memory workflow | {r['ratio']:.3f} |",
                f"| 100,000-application day at this rate, hours | {r['day_hours']:.2f} |",
                f"| cases called (joined stream or unreachable) | {r['called']:,} |",
                f"| claims / not connected / interviews | {s.get('claims', 0):,} / {s.get('not_connected', 0):,} / "  # noqa: E501
                f"{s.get('interviews', 0):,} |",
                f"| review tasks completed | {s.get('tasks_completed', 0):,} |",
                f"| integrity | {'all checks pass' if ok else r['integrity']} |",
                "",
                f"Outcome: {r['statuses']}.",
            ]
        )
        + "\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--robots", type=int, default=4)
    ap.add_argument("--intake", type=int, default=2, help="intake threads")
    ap.add_argument("--approvers", type=int, default=10, help="approvers in the staff register")
    ap.add_argument("--approvers-threads", type=int, default=2)
    ap.add_argument("--robot-poll-s", type=float, default=0.25,
                    help="a robot with nothing to dial claims again after this long")
    ap.add_argument("--approver-poll-s", type=float, default=0.5,
                    help="an approver with no open task looks again after this long")
    ap.add_argument("--decider", choices=["engine", "scripted"], default="engine")
    ap.add_argument("--clock", type=float, default=120.0, help="simulated-clock speed (back-offs)")
    ap.add_argument("--db", default="")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-s", type=float, default=3600)
    ap.add_argument("--procs", type=int, default=2, help="service replicas (processes) on the database")
    ap.add_argument("--progress-s", type=float, default=0, help="print the counts every this many s")
    ap.add_argument("--write", action="store_true", help="write bench/workflow/CASES.md")
    args = ap.parse_args()
    r = run(args)
    text = render(r)
    print(text)
    print({k: r[k] for k in ("integrity", "stats", "errors")})
    if args.write:
        (HERE / "CASES.md").write_text(text, encoding="utf-8")
    if not all(r["integrity"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
