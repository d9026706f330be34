"""Versioned tag definitions in the database, with maker-checker activation like decision policies.

Each dimension has numbered versions with an explicit status (proposed -> active -> retired, or
proposed -> rejected); exactly one is active. Versions are never edited. The proposer can never activate
their own version (:class:`Forbidden`, code ``maker_checker``); every step writes the audit log in the
same transaction. The shipped definitions become version 1 at first use.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from callvet.core import audit
from callvet.core.db import Database, utcnow
from callvet.core.errors import Conflict, Forbidden, NotFound
from callvet.decision.store import PolicyStatus as TagStatus
from callvet.portrait.tables import tag_versions
from callvet.portrait.tags import DIMENSIONS, shipped_definition, validate_definition
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

__all__ = [
    "TagStatus",
    "activate",
    "active_definitions",
    "get_version",
    "list_dimensions",
    "list_versions",
    "propose",
    "reject",
    "seed",
]

SEED_ACTOR = "system:seed"


def _sha(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _check(dimension: str) -> None:
    if dimension not in DIMENSIONS:
        raise NotFound(
            f"no tag dimension {dimension!r}; dimensions: {', '.join(DIMENSIONS)}", code="dimension_not_found"
        )


def _row(r: Any) -> dict[str, Any]:
    d = dict(r._mapping)
    for k in ("created_at", "activated_at"):
        if d.get(k) is not None:
            d[k] = d[k].isoformat()
    return d


def seed(db: Database) -> list[str]:
    """Load each shipped definition as version 1 (active) for dimensions without versions."""
    seeded: list[str] = []
    try:
        with db.begin() as conn:
            existing = set(conn.execute(select(tag_versions.c.dimension).distinct()).scalars())
            for dim in DIMENSIONS:
                if dim in existing:
                    continue
                content = shipped_definition(dim)
                now = utcnow()
                conn.execute(
                    insert(tag_versions).values(
                        dimension=dim,
                        version=1,
                        status=TagStatus.ACTIVE.value,
                        content=content,
                        sha256=_sha(content),
                        note="shipped default",
                        created_by=SEED_ACTOR,
                        created_at=now,
                        activated_by=SEED_ACTOR,
                        activated_at=now,
                    )
                )
                audit.record(
                    conn,
                    SEED_ACTOR,
                    "portrait_tag.activate",
                    "portrait_tag",
                    f"{dim}@1",
                    reason="shipped default loaded at first use",
                )
                seeded.append(dim)
    except IntegrityError:
        return []
    return seeded


def active_definitions(db: Database) -> dict[str, tuple[int, dict[str, Any]]]:
    seed(db)
    with db.connect() as conn:
        rows = conn.execute(
            select(tag_versions.c.dimension, tag_versions.c.version, tag_versions.c.content).where(
                tag_versions.c.status == TagStatus.ACTIVE.value
            )
        ).all()
    return {r.dimension: (r.version, r.content) for r in rows}


def list_dimensions(db: Database) -> list[dict[str, Any]]:
    seed(db)
    with db.connect() as conn:
        rows = conn.execute(
            select(
                tag_versions.c.dimension,
                tag_versions.c.version,
                tag_versions.c.status,
                tag_versions.c.content,
            )
        ).all()
    out = []
    for dim in DIMENSIONS:
        mine = [r for r in rows if r.dimension == dim]
        active = next((r for r in mine if r.status == TagStatus.ACTIVE.value), None)
        out.append(
            {
                "dimension": dim,
                "active_version": active.version if active else None,
                "kind": active.content["kind"] if active else None,
                "categories": active.content["categories"] if active else [],
                "versions": len(mine),
                "proposed": sum(r.status == TagStatus.PROPOSED.value for r in mine),
            }
        )
    return out


def list_versions(db: Database, dimension: str) -> list[dict[str, Any]]:
    _check(dimension)
    seed(db)
    cols = [c for c in tag_versions.c if c.name != "content"]
    with db.connect() as conn:
        rows = conn.execute(
            select(*cols).where(tag_versions.c.dimension == dimension).order_by(tag_versions.c.version)
        ).all()
    return [_row(r) for r in rows]


def get_version(db: Database, dimension: str, version: int) -> dict[str, Any]:
    _check(dimension)
    with db.connect() as conn:
        r = conn.execute(
            select(tag_versions).where(
                tag_versions.c.dimension == dimension, tag_versions.c.version == version
            )
        ).first()
    if r is None:
        raise NotFound(f"tag {dimension!r} has no version {version}", code="tag_version_not_found")
    return _row(r)


def propose(
    db: Database,
    dimension: str,
    content: Any,
    *,
    actor: str,
    note: str = "",
    expected_effect: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Store a new proposed version; it changes nothing until a second person activates it."""
    _check(dimension)
    seed(db)
    validate_definition(content, dimension)
    try:
        with db.begin() as conn:
            last = (
                conn.execute(
                    select(func.max(tag_versions.c.version)).where(tag_versions.c.dimension == dimension)
                ).scalar()
                or 0
            )
            version = int(last) + 1
            conn.execute(
                insert(tag_versions).values(
                    dimension=dimension,
                    version=version,
                    status=TagStatus.PROPOSED.value,
                    content=content,
                    sha256=_sha(content),
                    note=note,
                    expected_effect=expected_effect,
                    created_by=actor,
                    created_at=utcnow(),
                )
            )
            audit.record(
                conn,
                actor,
                "portrait_tag.propose",
                "portrait_tag",
                f"{dimension}@{version}",
                reason=note,
                details={"expected_effect": expected_effect, "sha256": _sha(content)},
            )
    except IntegrityError:
        raise Conflict(
            f"another version of {dimension!r} was proposed at the same moment; retry",
            code="concurrent_proposal",
        ) from None
    return get_version(db, dimension, version)


def _transition(
    db: Database, dimension: str, version: int, new: TagStatus, *, actor: str, reason: str
) -> dict[str, Any]:
    _check(dimension)
    with db.begin() as conn:
        row = conn.execute(
            select(tag_versions)
            .where(tag_versions.c.dimension == dimension, tag_versions.c.version == version)
            .with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"tag {dimension!r} has no version {version}", code="tag_version_not_found")
        status = TagStatus(row.status)
        if not status.can_become(new):
            raise Conflict(
                f"{dimension}@{version} is {status.value}; it cannot become {new.value}",
                code="invalid_transition",
            )
        if new is TagStatus.ACTIVE and row.created_by == actor:
            raise Forbidden(
                f"{actor} proposed {dimension}@{version} and cannot activate it: a second "
                "person must (maker-checker)",
                code="maker_checker",
            )
        values: dict[str, Any] = {"status": new.value}
        if new is TagStatus.ACTIVE:
            values.update(activated_by=actor, activated_at=utcnow())
            conn.execute(
                update(tag_versions)
                .where(tag_versions.c.dimension == dimension, tag_versions.c.status == TagStatus.ACTIVE.value)
                .values(status=TagStatus.RETIRED.value)
            )
        conn.execute(update(tag_versions).where(tag_versions.c.id == row.id).values(**values))
        audit.record(
            conn,
            actor,
            f"portrait_tag.{'activate' if new is TagStatus.ACTIVE else 'reject'}",
            "portrait_tag",
            f"{dimension}@{version}",
            reason=reason,
            details={"proposed_by": row.created_by, "previous_status": status.value},
        )
    return get_version(db, dimension, version)


def activate(db: Database, dimension: str, version: int, *, actor: str, reason: str = "") -> dict[str, Any]:
    return _transition(db, dimension, version, TagStatus.ACTIVE, actor=actor, reason=reason)


def reject(db: Database, dimension: str, version: int, *, actor: str, reason: str = "") -> dict[str, Any]:
    return _transition(db, dimension, version, TagStatus.REJECTED, actor=actor, reason=reason)
