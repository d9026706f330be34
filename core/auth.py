"""API keys and roles.

A key is ``cv_<key_id>_<secret>``; only the SHA-256 of the secret is stored. Keys carry 32 random bytes,
so a fast hash is safe here (no password stretching needed) and keeps per-request checks cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from callvet.core.audit import record
from callvet.core.db import Database, utcnow
from callvet.core.errors import InvalidInput, NotFound
from callvet.core.tables import api_keys
from sqlalchemy import insert, select, update

__all__ = ["Principal", "Role", "authenticate", "create_key", "list_keys", "revoke_key"]


class Role(StrEnum):
    ADMIN = "admin"
    ANALYST = "analyst"
    ROBOT = "robot"
    AUDITOR = "auditor"
    APPROVER = "approver"
    RISK_OFFICER = "risk_officer"
    MARKETER = "marketer"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id (used as the actor in the audit log), its role and label."""

    key_id: str
    role: Role
    label: str = ""

    @property
    def actor(self) -> str:
        return f"{self.role.value}:{self.label or self.key_id}"

    def has(self, *roles: Role) -> bool:
        return self.role is Role.ADMIN or self.role in roles


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(db: Database, role: str, label: str = "", *, actor: str = "cli") -> str:
    try:
        r = Role(role)
    except ValueError:
        raise InvalidInput(
            f"unknown role {role!r}; one of {', '.join(x.value for x in Role)}", code="unknown_role"
        ) from None
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with db.begin() as conn:
        conn.execute(
            insert(api_keys).values(
                key_id=key_id, key_hash=_hash(secret), role=r.value, label=label, created_at=utcnow()
            )
        )
        record(conn, actor, "key.create", "api_key", key_id, details={"role": r.value, "label": label})
    return f"cv_{key_id}_{secret}"


def authenticate(db: Database, token: str) -> Principal | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "cv":
        return None
    _, key_id, secret = parts
    with db.connect() as conn:
        row = conn.execute(
            select(api_keys.c.key_hash, api_keys.c.role, api_keys.c.label, api_keys.c.revoked_at).where(
                api_keys.c.key_id == key_id
            )
        ).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, _hash(secret)):
        return None
    return Principal(key_id=key_id, role=Role(row.role), label=row.label)


def list_keys(db: Database) -> list[dict[str, object]]:
    with db.connect() as conn:
        rows = conn.execute(
            select(api_keys.c.key_id, api_keys.c.role, api_keys.c.label, api_keys.c.created_at,
                   api_keys.c.revoked_at).order_by(api_keys.c.id)
        ).all()
    return [dict(r._mapping) for r in rows]


def revoke_key(db: Database, key_id: str, *, actor: str = "cli") -> None:
    with db.begin() as conn:
        res = conn.execute(
            update(api_keys).where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        if res.rowcount == 0:
            raise NotFound(f"no active key {key_id!r}")
        record(conn, actor, "key.revoke", "api_key", key_id)
