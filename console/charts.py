"""Pictures for risk officers and auditors: the decision mix and the reason codes per day, and the
supervision coverage with the 3-day rectification rate, drawn as SVG on the server.

The pictures are plain SVG in the page (no script, nothing the CSP has to allow), so the geometry is
here and tested in Python. The stored decisions read are bounded (:data:`MAX_ROWS`, newest first) so
the page stays cheap on a large table; the page says when the bound cut the window short.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from callvet.api.routes.workflow import runtime
from callvet.console.base import console_router, ctx_of, guard, render
from callvet.core.auth import Role
from callvet.core.db import Database
from callvet.decision.tables import decision_records
from callvet.voice.call.tables import call_events, calls
from callvet.workflow.tables import wf_tasks
from fastapi import Query, Request
from fastapi.responses import Response
from sqlalchemy import func, select

__all__ = ["MAX_ROWS", "OUTCOMES", "blacklist_scores", "decision_days", "gauge", "queue_depth", "router",
           "score_histogram", "stacked_bars"]

router = console_router()
READERS = (Role.RISK_OFFICER, Role.AUDITOR)
MAX_ROWS = 50_000
OUTCOMES = ("approve", "refer_investigation", "refer_human", "decline")
TOP_REASONS = 6


def decision_days(db: Database, days: int = 14, now: datetime | None = None,
                  max_rows: int = MAX_ROWS) -> dict[str, Any]:
    """Counts per day (UTC) of the last ``days`` days: outcomes, and the top reason codes (the
    pre-screen's and the investigation's; limit bands are left out, every approval has one)."""
    end = (now or datetime.now(UTC)).astimezone(UTC)
    first = end.date() - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    with db.connect() as conn:
        rows = conn.execute(select(decision_records.c.created_at, decision_records.c.decision,
                                   decision_records.c.reasons)
                            .where(decision_records.c.created_at >= since,
                                   decision_records.c.created_at < since + timedelta(days=days))
                            .order_by(decision_records.c.created_at.desc()).limit(max_rows)).all()
    labels = [first + timedelta(days=i) for i in range(days)]
    index = {d: i for i, d in enumerate(labels)}
    mix: dict[str, list[int]] = {o: [0] * days for o in OUTCOMES}
    reasons: dict[str, list[int]] = defaultdict(lambda: [0] * days)
    totals: Counter[str] = Counter()
    for r in rows:
        at = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC)
        i = index.get(at.astimezone(UTC).date())
        if i is None:
            continue
        mix.setdefault(r.decision, [0] * days)[i] += 1
        for reason in r.reasons or []:
            code = reason.get("code", "") if isinstance(reason, dict) else ""
            if code and reason.get("policy") != "credit_limit":
                reasons[code][i] += 1
                totals[code] += 1
    top = [c for c, _ in totals.most_common(TOP_REASONS)]
    return {"days": [d.isoformat() for d in labels], "mix": mix, "reasons": {c: reasons[c] for c in top},
            "rows": len(rows), "capped": len(rows) >= max_rows}


def stacked_bars(days: list[str], series: dict[str, list[int]], *, width: int = 720, height: int = 220,
                 pad: int = 28) -> dict[str, Any]:
    """Rectangles of a stacked bar chart, one bar per day, series stacked in the given order."""
    n = max(len(days), 1)
    totals = [sum(s[i] for s in series.values()) for i in range(len(days))]
    top = max(totals, default=0) or 1
    slot = (width - pad) / n
    bar = max(slot * 0.7, 1.0)
    plot = height - pad
    rects: list[dict[str, Any]] = []
    for i, day in enumerate(days):
        y = float(plot)
        for k, (name, values) in enumerate(series.items()):
            v = values[i]
            if v <= 0:
                continue
            h = plot * v / top
            y -= h
            rects.append({"x": round(pad + i * slot + (slot - bar) / 2, 2), "y": round(y, 2),
                          "w": round(bar, 2), "h": round(h, 2), "series": name, "k": k, "value": v,
                          "day": day})
    ticks = [{"x": round(pad + i * slot + slot / 2, 2), "label": d[5:]} for i, d in enumerate(days)
             if i % max(1, n // 7) == 0]
    return {"width": width, "height": height, "plot": plot, "pad": pad, "top": top, "rects": rects,
            "ticks": ticks, "totals": totals}


def gauge(rate: float | None, *, width: int = 320) -> dict[str, Any]:
    """A horizontal bar filled to ``rate`` (0..1); None (nothing to measure yet) draws no fill."""
    filled = 0.0 if rate is None else max(0.0, min(1.0, float(rate)))
    return {"width": width, "fill": round(width * filled, 2),
            "label": "-" if rate is None else f"{100 * filled:.1f}%"}


def queue_depth(db: Database, now: datetime | None = None) -> dict[str, Any]:
    """What waits for people now: open human tasks per role (and how many are past due), and the calls
    that raised a voiceprint alarm in the last 24 hours and 7 days (the analysts' review queue)."""
    at = (now or datetime.now(UTC)).astimezone(UTC)
    with db.connect() as conn:
        open_rows = conn.execute(select(wf_tasks.c.role, func.count()).where(wf_tasks.c.status == "open")
                                 .group_by(wf_tasks.c.role)).all()
        late_rows = conn.execute(select(wf_tasks.c.role, func.count())
                                 .where(wf_tasks.c.status == "open", wf_tasks.c.due_at < at)
                                 .group_by(wf_tasks.c.role)).all()
        alarms = {label: int(conn.execute(select(func.count()).select_from(calls)
                                          .where(calls.c.alarm_ever.is_(True),
                                                 calls.c.created_at >= at - span)).scalar_one())
                  for label, span in (("day", timedelta(days=1)), ("week", timedelta(days=7)))}
    late = dict(late_rows)
    tasks = [{"role": role, "open": int(n), "overdue": int(late.get(role, 0))}
             for role, n in sorted(open_rows)]
    return {"tasks": tasks, "alarm_calls": alarms}


def blacklist_scores(db: Database, max_events: int = MAX_ROWS) -> dict[str, Any]:
    """Per call, the best blacklist score of its last verdict (how close the caller came to a listed
    voice), with the thresholds that verdict used; from the newest ``max_events`` verdicts."""
    with db.connect() as conn:
        rows = conn.execute(select(call_events.c.call_id, call_events.c.data)
                            .where(call_events.c.kind == "verdict")
                            .order_by(call_events.c.id.desc()).limit(max_events)).all()
    seen: set[str] = set()
    scores: list[float] = []
    threshold = review = None
    for r in rows:
        if r.call_id in seen:
            continue
        seen.add(r.call_id)
        data = r.data or {}
        matches = data.get("matches") or []
        if not matches or matches[0].get("score") is None:
            continue
        scores.append(float(matches[0]["score"]))
        if threshold is None and data.get("threshold") is not None:
            threshold, review = float(data["threshold"]), data.get("review_threshold")
    return {"scores": scores, "threshold": threshold,
            "review_threshold": None if review is None else float(review), "capped": len(rows) >= max_events}


def score_histogram(scores: list[float], marks: dict[str, float | None], *, bins: int = 20,
                    width: int = 720, height: int = 200) -> dict[str, Any]:
    """Bars of a histogram of ``scores`` (equal bins over their range and the marks'), and the x of each
    mark (thresholds) on the same axis."""
    points = [*scores, *(v for v in marks.values() if v is not None)]
    lo, hi = (min(points), max(points)) if points else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    step = (hi - lo) / bins
    counts = [0] * bins
    for v in scores:
        counts[min(int((v - lo) / step), bins - 1)] += 1
    labels = [f"{lo + i * step:.2f}" for i in range(bins)]
    chart = stacked_bars(labels, {"calls": counts}, width=width, height=height)
    span = width - chart["pad"]
    chart["marks"] = [{"name": k, "value": v, "x": round(chart["pad"] + span * (v - lo) / (hi - lo), 2)}
                      for k, v in marks.items() if v is not None]
    chart["counts"] = counts
    slot = span / bins
    chart["ticks"] = [{"x": round(chart["pad"] + i * slot, 2), "label": labels[i]}
                      for i in range(0, bins, max(1, bins // 5))]
    return chart


@router.get("/charts")
def charts_page(request: Request, days: int = Query(14, ge=1, le=90)) -> Response:
    session = guard(request, *READERS)
    ctx = ctx_of(request)
    data = decision_days(ctx.db, days)
    metrics = runtime(ctx).supervisor.metrics()
    return render(request, "charts.html", session, title_key="nav.charts", data=data, days=days,
                  queues=queue_depth(ctx.db), scores=(bl := blacklist_scores(ctx.db)),
                  histogram=score_histogram(bl["scores"], {"alarm": bl["threshold"],
                                                           "review": bl["review_threshold"]}),
                  mix=stacked_bars(data["days"], data["mix"]),
                  reasons=stacked_bars(data["days"], data["reasons"]),
                  metrics=metrics, coverage=gauge(metrics.get("coverage")),
                  in_time=gauge(metrics.get("rectified_within_3_days_rate")))
