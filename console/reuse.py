"""The analyst's voice-reuse groups: calls of different applicants that the call-print search found to
be one voice, joined into groups (one person behind several applications is what a fraud ring looks
like; each pair alone is only a lead).

A group is a connected component of the "same voice" links the call server recorded on its verdicts
(``voice_reuse`` with ``reuse_matches``, :mod:`callvet.voice.call.reuse`): A matched B and B matched C
put A, B and C in one group even if A and C were never compared. Only the most recent verdict events
are read (:data:`MAX_EVENTS`) so the page stays cheap; the page says when that bound was reached.
"""

from __future__ import annotations

from typing import Any

from callvet.console.base import console_router, ctx_of, guard, render
from callvet.core.auth import Role
from callvet.core.db import Database
from callvet.voice.call.tables import call_events, calls
from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import select

__all__ = ["MAX_EVENTS", "group_links", "reuse_groups", "router"]

router = console_router()
MAX_EVENTS = 20_000
_CHUNK = 500


def group_links(links: list[tuple[str, str, float]]) -> list[dict[str, Any]]:
    """Connected components of (call, call, score) links, largest first, then by best score."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, _ in links:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, dict[str, Any]] = {}
    for a, b, score in links:
        g = groups.setdefault(find(a), {"calls": set(), "links": 0, "best_score": float("-inf")})
        g["calls"].update((a, b))
        g["links"] += 1
        g["best_score"] = max(g["best_score"], score)
    out = [{"calls": sorted(g["calls"]), "links": g["links"], "best_score": round(g["best_score"], 4)}
           for g in groups.values()]
    return sorted(out, key=lambda g: (-len(g["calls"]), -g["best_score"], g["calls"][0]))


def reuse_groups(db: Database, max_events: int = MAX_EVENTS) -> dict[str, Any]:
    """Voice-reuse groups from the newest ``max_events`` verdicts, each call with its application."""
    with db.connect() as conn:
        rows = conn.execute(select(call_events.c.call_id, call_events.c.data)
                            .where(call_events.c.kind == "verdict")
                            .order_by(call_events.c.id.desc()).limit(max_events)).all()
    links: dict[tuple[str, str], float] = {}
    seen_apps: dict[str, str] = {}
    for r in rows:
        data = r.data or {}
        if not data.get("voice_reuse"):
            continue
        for m in data.get("reuse_matches") or []:
            other = str(m.get("call_id") or "")
            if not other or other == r.call_id:
                continue
            key = (min(r.call_id, other), max(r.call_id, other))
            links[key] = max(links.get(key, float("-inf")), float(m.get("score") or 0.0))
            if m.get("application_id"):
                seen_apps.setdefault(other, str(m["application_id"]))
    groups = group_links([(a, b, s) for (a, b), s in links.items()])
    ids = sorted({c for g in groups for c in g["calls"]})
    info: dict[str, dict[str, Any]] = {}
    with db.connect() as conn:
        for i in range(0, len(ids), _CHUNK):
            for c in conn.execute(select(calls.c.id, calls.c.application_id, calls.c.created_at)
                                  .where(calls.c.id.in_(ids[i:i + _CHUNK]))).all():
                info[c.id] = {"application_id": c.application_id, "created_at": c.created_at.isoformat()}
    for g in groups:
        g["members"] = [{"call_id": c, "application_id": (info.get(c) or {}).get("application_id")
                         or seen_apps.get(c), "created_at": (info.get(c) or {}).get("created_at"),
                         "stored": c in info} for c in g["calls"]]
        g["applications"] = sorted({m["application_id"] for m in g["members"] if m["application_id"]})
    return {"groups": groups, "verdicts_read": len(rows), "capped": len(rows) >= max_events}


@router.get("/reuse")
def reuse_page(request: Request) -> Response:
    session = guard(request, Role.ANALYST)
    out = reuse_groups(ctx_of(request).db)
    return render(request, "reuse.html", session, title_key="nav.reuse", **out)
