"""Which stored prints the engine in force cannot search, and who must be re-enrolled because of it.

Every print is stored with the ``backend_id`` of the engine that made it (encoder name and build,
back end), and only prints of the engine's own ``backend_id`` are searched: prints of two back ends
are different spaces and mixing them would give meaningless scores. A print cannot be converted
either: the fused voiceprint (GE2E + SE-Res2Net50, :mod:`callvet.voice.fusion`) needs an embedding
the old GE2E-only print does not hold, and raw audio is never kept. So after a back-end change the old
prints stay stored (deletable, audited as before) but unsearched, and this report says which
identities have *no* searchable print left, i.e. are invisible to every search until someone enrols
them again from the original recordings (``POST /v1/blacklist/identities/{id}/samples``).
"""

from __future__ import annotations

from typing import Any

from callvet.core.db import Database
from callvet.voice.tables import blacklist_samples
from sqlalchemy import func, select

__all__ = ["reenrolment_report"]

#: Identity ids listed in full (the counts are always complete).
LIST_LIMIT = 1000


def reenrolment_report(db: Database, backend_id: str, *, limit: int = LIST_LIMIT) -> dict[str, Any]:
    """Prints of other back ends, and identities with none of ``backend_id`` (need re-enrolment)."""
    c = blacklist_samples.c
    with db.connect() as conn:
        by_backend = conn.execute(select(c.backend_id, func.count()).where(c.backend_id != backend_id)
                                  .group_by(c.backend_id)).all()
        ids = select(c.identity_id).distinct()
        stale = set(conn.execute(ids.where(c.backend_id != backend_id)).scalars())
        current = set(conn.execute(ids.where(c.backend_id == backend_id)).scalars())
    missing = sorted(int(i) for i in stale - current)
    return {
        "required": bool(missing),
        "backend_id": backend_id,
        "unsearchable_prints": sum(int(n) for _, n in by_backend),
        "unsearchable_prints_by_backend": {str(b): int(n) for b, n in by_backend},
        "identities_with_unsearchable_prints": len(stale),
        "identities_not_searchable": len(missing),
        "identity_ids_not_searchable": missing[:limit],
        "truncated": len(missing) > limit,
        "action": ("re-enrol these identities from their original recordings (POST "
                   "/v1/blacklist/identities/{id}/samples or `callvet blacklist add-sample`): a print of "
                   "another back end cannot be converted, and audio is never kept") if missing else None,
    }
