"""The staff register supervision checks (``wf_users``), kept in step with the console's users.

Supervision names an approval by someone the register does not know as a critical finding
(``approver_known``, workflow/supervision/*.yaml). When the register was filled by hand, every newly
created approver was such a finding until someone remembered ``callvet workflow users``. So the console's
user store calls :func:`register_staff` when it creates a person who works tasks and
:func:`deregister_staff` when it disables one, on the caller's connection: the account, its register
row and both audit rows commit together or not at all.

A disabled person stays in the register as inactive rather than being deleted: an approval they make
afterwards (a stolen session, a forgotten API key) is then the precise "approver inactive" finding,
and the tasks they approved before keep a register row to be read against.
"""

from __future__ import annotations

from typing import Any

from callvet.core.audit import record
from callvet.core.auth import Role
from callvet.core.errors import InvalidInput
from callvet.workflow.tables import wf_users
from sqlalchemy import Connection, insert, select, update

__all__ = ["ALL_SKILLS", "STAFF_ROLES", "deregister_staff", "register_staff"]

#: Console roles that work workflow tasks and so belong in the register (auditors and admins do not).
STAFF_ROLES = frozenset({Role.ANALYST.value, Role.APPROVER.value, Role.RISK_OFFICER.value})
#: The skills the supervision rules ask for (card issuance, instalment products, limit changes).
ALL_SKILLS = ("card", "instalment", "limit")


def register_staff(conn: Connection, user_id: str, role: str, *, actor: str, name: str = "",
                   skills: list[str] | None = None, max_amount: float | None = None) -> bool:
    """Put ``user_id`` in the register as active (new row, or a returning person's row reactivated).

    Returns False, writing nothing, for a role that works no tasks. ``skills`` default to every
    product (the bank narrows them with ``callvet workflow users``); ``max_amount`` None is no cap."""
    if role not in STAFF_ROLES:
        return False
    chosen = sorted(set(skills if skills is not None else ALL_SKILLS))
    unknown = sorted(set(chosen) - set(ALL_SKILLS))
    if unknown:
        raise InvalidInput(f"unknown skills {unknown}; one of {list(ALL_SKILLS)}", code="invalid_skills")
    if max_amount is not None and not max_amount > 0:
        raise InvalidInput("max_amount must be positive (or absent: no cap)", code="invalid_max_amount")
    values: dict[str, Any] = {"name": name, "role": role, "skills": chosen, "max_amount": max_amount,
                              "active": True}
    exists = conn.execute(select(wf_users.c.user_id).where(wf_users.c.user_id == user_id)).first()
    if exists:
        conn.execute(update(wf_users).where(wf_users.c.user_id == user_id).values(**values))
    else:
        conn.execute(insert(wf_users).values(user_id=user_id, **values))
    record(conn, actor, "workflow.staff.register", "wf_user", user_id, details=values)
    return True


def deregister_staff(conn: Connection, user_id: str, *, actor: str, reason: str = "") -> bool:
    """Mark ``user_id`` inactive in the register (False when they were not in it, or already inactive)."""
    res = conn.execute(update(wf_users).where(wf_users.c.user_id == user_id, wf_users.c.active.is_(True))
                       .values(active=False))
    if not res.rowcount:
        return False
    record(conn, actor, "workflow.staff.deregister", "wf_user", user_id, reason=reason)
    return True
