"""Per-case cost of the cases flow in one thread: SQL statements, commits and milliseconds per case.

    .venv/bin/python bench/workflow/per_case.py --n 400              # SQLite in a temporary directory
    .venv/bin/python bench/workflow/per_case.py --n 400 --db postgresql+psycopg://.../db
    .venv/bin/python bench/workflow/other_checkout.py ../peer bench/workflow/per_case.py --n 400  # old code

Intake of ``n`` applications, then every queued call (claim, stream admission, a genuine applicant's
interview, call end), then the pump, serially, with statements and commits counted by SQLAlchemy events
(20 warm-up intakes excluded). No concurrency, so the figures are the work per case, not a throughput.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import cases_day as cd  # noqa: E402
from cases_day import Application, CaseService, Database, WorkflowRuntime, application  # noqa: E402


def main() -> None:
    from callvet.questionnaire.service import InterviewService
    from callvet.sim.questionnaire import GenuineApplicant

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--db", default="")
    args = ap.parse_args()
    db = Database(args.db or f"sqlite:///{Path(tempfile.mkdtemp()) / 'per_case.db'}")
    db.create_schema()
    rt = WorkflowRuntime(db, decide=cd._decider("engine", db))
    rt.ensure_ready()
    interviews = InterviewService(db, use_encoder=False)
    svc = CaseService(db, lambda: rt, lambda: interviews)
    stmts: Counter[str] = Counter()
    commits = [0]

    def on_stmt(conn: Any, cur: Any, stmt: str, params: Any, ctx: Any, many: bool) -> None:
        stmts[stmt.split()[0]] += 1

    def on_commit(conn: Any) -> None:
        commits[0] += 1

    event.listen(db.engine, "before_cursor_execute", on_stmt)
    event.listen(db.engine, "commit", on_commit)
    window = {"timezone": "UTC", "start_hour": 0, "end_hour": 24}
    for i in range(20):
        svc.create({"application": application(10**6 + i), "call_window": window}, actor="warm-up")
    while svc.claim("robot:warm-up") is not None:
        pass
    stmts.clear()
    commits[0] = 0
    rng = random.Random(1)
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    for i in range(args.n):
        svc.create({"application": application(i), "call_window": window}, actor="robot:intake")
    t["intake"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    calls = 0
    while (claim := svc.claim("robot:r")) is not None:
        call_id, params = uuid.uuid4().hex, claim["custom_parameters"]
        svc.admit_stream(call_id, params)
        iid = params.get("interview_id")
        caller = GenuineApplicant(Application.model_validate(cd._application_of(db, claim["case_id"])),
                                  random.Random(rng.random()))
        view = interviews.get(iid, include_answers=False)
        while view.get("state") == "asking":
            q = view["question"]
            r = caller.respond(q)
            view = interviews.answer(iid, q["question_id"], r["transcript"], timing=r["timing"],
                                     prosody=r["prosody"], actor="robot:r")
        svc.record_call_end(claim["case_id"], call_id, reason="stop", verdicts=cd._verdicts(rng))
        calls += 1
    t["calls"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    while svc.pump():
        pass
    t["pump"] = time.perf_counter() - t0
    n = args.n
    print(f"{n} cases, {calls} calls; s: " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()))
    print(f"ms per case {1000 * sum(t.values()) / n:.1f} (intake {1000 * t['intake'] / n:.1f}); "
          f"statements per case {sum(stmts.values()) / n:.1f} "
          f"({', '.join(f'{k} {v / n:.1f}' for k, v in sorted(stmts.items()))}); "
          f"commits per case {commits[0] / n:.1f}")
    print(svc.counts())


if __name__ == "__main__":
    main()
