"""A simulated day of card applications through the durable workflow, with SIGKILLs of the worker.

    .venv/bin/python bench/workflow/run.py --n 5000 --kills 3            # a measured fraction of the day
    .venv/bin/python bench/workflow/run.py --n 100000 --kills 10         # the whole day (long)

What runs: every application starts a ``card_issuance`` instance (queued, status ``running``). A worker
subprocess (``callvet workflow worker``) advances them: pre-screen by the decision engine, investigation
call requests, issuance or decline. This process plays the call robot (delivers investigation results:
5% voiceprint alarms, 10% failed, 20% inconclusive questionnaires) and the human approvers (complete
their assigned tasks, 85% approve). The worker is SIGKILLed ``--kills`` times at evenly spaced
completion levels and restarted. At the end every instance must be completed, with exactly one
issuance per issued card, one effect per service task, one ``instance.completed`` event each.

Peer (same run): the same BPMN executed by SpiffWorkflow in memory with the same decider and the same
simulated people, nothing persisted. Ratio = durable / in-memory throughput (the cost of durability).
Figures go to stdout and, with ``--write``, to bench/workflow/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from callvet.core.db import Database
from callvet.core.errors import Conflict
from callvet.sim.workflow import application, scripted_decider
from callvet.workflow.engine import SandboxScriptEngine, WorkflowRuntime, engine_decider
from callvet.workflow.tables import wf_effects, wf_events, wf_instances, wf_issuances, wf_tasks
from sqlalchemy import func, select

HERE = Path(__file__).resolve().parent


def _investigation(rng: random.Random) -> dict[str, Any]:
    u = rng.random()
    if u < 0.05:
        return {"voiceprint_alarm": True, "investigator": "robot-1"}
    verdict = "fail" if u < 0.15 else "inconclusive" if u < 0.35 else "pass"
    return {
        "voiceprint_alarm": False,
        "investigator": "robot-1",
        "questionnaire": {"verdict": verdict, "risk_score": round(rng.random() * 0.6, 3)},
    }


def _review(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.85:
        return {
            "review_decision": "approve",
            "approved_amount": 20000,
            "documents": ["id_card", "income_proof"],
            "review_note": "Income and identity verified against the documents on file.",
        }
    return {"review_decision": "decline", "review_note": "Income could not be verified."}


def _decider(kind: str, db: Database) -> Any:
    if kind == "scripted":
        return scripted_decider
    from callvet.core.settings import get_settings
    from callvet.decision import DecisionEngine

    return engine_decider(DecisionEngine.from_settings(get_settings(), db))


def peer_in_memory(n: int, decide: Any, seed: int) -> float:
    """Instances/s of the same process run by SpiffWorkflow in memory, no persistence (the peer)."""
    from callvet.workflow.definitions import PROCESSES_DIR, parse_definition
    from SpiffWorkflow.bpmn.specs.defaults import ServiceTask
    from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
    from SpiffWorkflow.bpmn.util import BpmnEvent
    from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
    from SpiffWorkflow.util.task import TaskState

    parsed = parse_definition((PROCESSES_DIR / "card_issuance.bpmn").read_text())
    engine = SandboxScriptEngine()
    rng = random.Random(seed)
    handlers = {
        "product.configure": lambda d: {
            "review_deadline": "P3D",
            "amount": d["application"]["requested_limit"],
            "auto_issue_max": 50000,
        },
        "decision.prescreen": lambda d: _fields(decide(d["application"], None, "bench"), "prescreen"),
        "decision.final": lambda d: _fields(
            decide(d["application"], d.get("investigation") or {}, "bench"), "final"
        ),
        "investigation.request": lambda d: {"call_requests": 1},
        "questionnaire.collect": lambda d: {},  # the simulated robot sends the verdict in the message
        "issuance.issue_card": lambda d: {"outcome": "card_issued"},
        "notify.decline": lambda d: {"outcome": "declined"},
    }
    t0 = time.perf_counter()
    for i in range(n):
        wf = BpmnWorkflow(parsed.spec, parsed.subprocess_specs, script_engine=engine)
        for t in wf.get_tasks(state=TaskState.READY):
            t.data["application"] = application(i)
        while not wf.is_completed():
            ready = wf.get_tasks(state=TaskState.READY, manual=False)
            if ready:
                t = ready[0]
                if isinstance(t.task_spec, ServiceTask):
                    t.data.update(handlers[parsed.meta["elements"][t.task_spec.bpmn_id]["handler"]](t.data))
                    t.run()
                    if t.state == TaskState.STARTED:
                        t.complete()
                else:
                    t.run()
                continue
            human = wf.get_tasks(state=TaskState.READY, manual=True)
            if human:
                human[0].data.update(_review(rng))
                human[0].run()
                continue
            wf.send_event(
                BpmnEvent(
                    MessageEventDefinition("investigation_result"),
                    payload={"investigation": _investigation(rng)},
                )
            )
    return n / (time.perf_counter() - t0)


def _fields(d: dict[str, Any], stage: str) -> dict[str, Any]:
    return {stage: d, "decision": d["decision"], "credit_limit": d["credit_limit"], "risk_score": d["score"]}


def _workers(db_url: str, decider: str, log: Path, n: int) -> list[subprocess.Popen[bytes]]:
    return [_worker(db_url, decider, log, f"{k}/{n}" if n > 1 else "") for k in range(n)]


def _worker(db_url: str, decider: str, log: Path, shard: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "callvet", "workflow", "worker", "--interval", "0.02"]
    if shard:
        cmd += ["--shard", shard]
    if decider == "scripted":
        cmd += ["--decider", "callvet.sim.workflow:scripted_decider"]
    with log.open("ab") as fh:
        return subprocess.Popen(
            cmd, env={**os.environ, "CALLVET_DATABASE_URL": db_url}, stdout=subprocess.DEVNULL, stderr=fh
        )


def _count(db: Database, status: str) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(wf_instances).where(wf_instances.c.status == status)
            ).scalar()
            or 0
        )


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="callvet-wf-bench-"))
    url = args.db or f"sqlite:///{tmp / 'bench.db'}"
    db = Database(url)
    db.create_schema()
    rng = random.Random(args.seed)
    rt = WorkflowRuntime(db, decide=_decider(args.decider, db))
    rt.ensure_ready()
    for k in range(args.approvers):
        rt.board.upsert_user(
            f"appr-{k:02d}",
            role="approver",
            skills=["card"],
            max_amount=100000,
            name=f"Approver {k}",
            actor="bench",
        )
    for k in range(max(2, args.approvers // 4)):
        rt.board.upsert_user(
            f"risk-{k:02d}", role="risk_officer", skills=["card", "limit"], name=f"Risk {k}", actor="bench"
        )

    peer_n = max(200, min(2000, args.n // 10))
    peer = peer_in_memory(peer_n, _decider(args.decider, db), args.seed)

    t_submit = time.perf_counter()
    for i in range(args.n):
        rt.start("card_issuance", {"application": application(i)}, actor="analyst:bench", run=False)
    submit_s = time.perf_counter() - t_submit

    log = tmp / "worker.log"
    t0 = time.perf_counter()
    procs = _workers(url, args.decider, log, args.workers)
    kill_at = [args.n * (k + 1) // (args.kills + 1) for k in range(args.kills)]
    kills: list[dict[str, int]] = []
    people = 0
    while True:
        done = _count(db, "completed") + _count(db, "failed")
        if done >= args.n:
            break
        if kill_at and done >= kill_at[0]:
            kill_at.pop(0)
            running = _count(db, "running")
            for proc in procs:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            kills.append({"completed": done, "running": running})
            procs = _workers(url, args.decider, log, args.workers)
        tasks = rt.board.list_open(role=None, limit=200)
        for t in tasks:
            try:
                rt.complete_task(
                    t["task_id"],
                    _review(rng),
                    actor=f"{t['role']}:{t['assignee']}",
                    role=None,
                    reviewer_id=t["assignee"],
                )
                people += 1
            except Conflict:
                pass
        with db.connect() as conn:
            waiting = [
                r.id
                for r in conn.execute(
                    select(wf_instances.c.id)
                    .where(
                        wf_instances.c.status == "waiting",
                        wf_instances.c.id.not_in(
                            select(wf_tasks.c.instance_id).where(wf_tasks.c.status == "open")
                        ),
                    )
                    .limit(200)
                ).all()
            ]
        for iid in waiting:
            try:
                rt.deliver_message(
                    iid, "investigation_result", {"investigation": _investigation(rng)}, actor="robot:bench"
                )
                people += 1
            except Conflict:
                pass
        if not tasks and not waiting:
            time.sleep(0.05)
    wall = time.perf_counter() - t0
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        proc.wait()

    with db.connect() as conn:
        statuses = Counter(
            dict(
                conn.execute(
                    select(wf_instances.c.status, func.count()).group_by(wf_instances.c.status)
                ).all()
            )
        )
        per_issue = Counter(r.instance_id for r in conn.execute(select(wf_issuances.c.instance_id)).all())
        events = conn.execute(
            select(wf_events.c.kind, wf_events.c.instance_id, wf_events.c.details).where(
                wf_events.c.kind.in_(["instance.completed", "service.completed"])
            )
        ).all()
        n_effects = conn.execute(select(func.count()).select_from(wf_effects)).scalar()
        lat = [
            (r.assigned_at - r.created_at).total_seconds()
            for r in conn.execute(
                select(wf_tasks.c.created_at, wf_tasks.c.assigned_at).where(
                    wf_tasks.c.assigned_at.is_not(None)
                )
            ).all()
        ]
        n_tasks = conn.execute(select(func.count()).select_from(wf_tasks)).scalar()
    completed_events = Counter(r.instance_id for r in events if r.kind == "instance.completed")
    fresh = Counter(r.details["effect_key"] for r in events if r.kind == "service.completed")
    outcomes = Counter(r.details.get("handler") for r in events if r.kind == "service.completed")
    integrity = {
        "all_completed": statuses.get("completed", 0) == args.n,
        "one_issuance_per_card": (max(per_issue.values()) if per_issue else 1) == 1,
        "one_completed_event_each": len(completed_events) == args.n and set(completed_events.values()) == {1},
        "one_effect_per_service_task": set(fresh.values()) <= {1} and len(fresh) == n_effects,
    }
    replayed = sum(1 for r in events if r.kind == "service.completed" and r.details["replayed"])
    lat.sort()
    p95 = lat[int(0.95 * (len(lat) - 1))] if lat else float("nan")
    metrics = rt.supervisor.metrics()
    ips = args.n / wall
    return {
        "n": args.n,
        "workers": args.workers,
        "decider": args.decider,
        "db": url.split(":")[0],
        "kills": kills,
        "wall_s": wall,
        "submit_s": submit_s,
        "instances_per_s": ips,
        "peer_instances_per_s": peer,
        "peer_n": peer_n,
        "ratio": ips / peer,
        "day_hours": 100000 / ips / 3600,
        "p95_assign_ms": p95 * 1000,
        "median_assign_ms": statistics.median(lat) * 1000 if lat else float("nan"),
        "tasks": n_tasks,
        "people_actions": people,
        "statuses": dict(statuses),
        "issued": len(per_issue),
        "integrity": integrity,
        "replayed": replayed,
        "supervision": metrics,
        "handlers": dict(outcomes),
        "log": str(log),
    }


def render(r: dict[str, Any]) -> str:
    sup = r["supervision"]
    ok = all(r["integrity"].values())
    lines = [
        "# Workflow engine benchmark",
        "",
        f"`bench/workflow/run.py --n {r['n']} --kills {len(r['kills'])} --workers {r['workers']} "
        f"--decider {r['decider']}`, "
        f"{platform.machine()} Python {platform.python_version()}, {os.cpu_count()} CPUs (shared with six "
        f"other engineers' jobs), {r['db']} database, {r['workers']} worker subprocess(es) plus this "
        "process (simulated "
        "approvers and call robot).",
        "",
        "Peer: the same `card_issuance` BPMN run by SpiffWorkflow in memory with the same decider and "
        f"simulated people, nothing persisted ({r['peer_n']} instances, same run). "
        "Ratio = durable / in-memory.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| applications (instances) | {r['n']:,} |",
        f"| durable throughput, instances/s | {r['instances_per_s']:.1f} |",
        f"| in-memory peer, instances/s | {r['peer_instances_per_s']:.1f} |",
        f"| ratio durable / in-memory | {r['ratio']:.3f} |",
        f"| 100,000-application day at this rate, hours (extrapolated) | {r['day_hours']:.2f} |",
        f"| human tasks created | {r['tasks']:,} |",
        f"| task-assignment latency p95 / median, ms | {r['p95_assign_ms']:.2f} / "
        f"{r['median_assign_ms']:.2f} |",
        f"| supervision coverage (checked / completed approvals) | {sup['coverage']} "
        f"({sup['checked']:,} / {sup['completed_actions']:,}) |",
        f"| supervision findings (checks with a finding) | {sup['findings']:,} "
        f"({sup['checks_with_findings']:,}) |",
        f"| worker SIGKILLs during the run | {len(r['kills'])} (instances queued or in flight at each: "
        f"{', '.join(str(k['running']) for k in r['kills'])}) |",
        f"| service results replayed from the effect store after kills | {r['replayed']:,} |",
        f"| integrity after the kills | {'all checks pass' if ok else r['integrity']} |",
        "",
        f"Outcome: {r['statuses']}; cards issued {r['issued']:,}. Integrity checks: every instance "
        "completed, "
        "one issuance row per issued card, one `instance.completed` event per instance, one stored effect "
        "per service-task execution (replays reuse it).",
        "",
        f"Queueing {r['n']:,} instances took {r['submit_s']:.1f} s (not included in the throughput).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--approvers", type=int, default=20)
    ap.add_argument("--workers", type=int, default=1, choices=[1, 2, 4], help="worker processes (shards)")
    ap.add_argument("--decider", choices=["engine", "scripted"], default="engine")
    ap.add_argument("--db", default="", help="SQLAlchemy URL (default: a fresh SQLite file)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--write", action="store_true", help="write bench/workflow/RESULTS.md")
    args = ap.parse_args()
    r = run(args)
    text = render(r)
    print(text)
    print({k: r[k] for k in ("integrity", "kills", "handlers", "log")})
    if args.write:
        (HERE / "RESULTS.md").write_text(text, encoding="utf-8")
    if not all(r["integrity"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
