from __future__ import annotations

import pytest
from callvet.core import audit, auth
from callvet.core.auth import Role
from callvet.core.db import Database
from callvet.core.errors import InvalidInput, NotFound


def test_key_roundtrip_and_revoke(db: Database) -> None:
    key = auth.create_key(db, "analyst", "alice")
    p = auth.authenticate(db, key)
    assert p is not None and p.role is Role.ANALYST and p.label == "alice"
    assert auth.authenticate(db, key + "x") is None
    assert auth.authenticate(db, "garbage") is None
    auth.revoke_key(db, p.key_id)
    assert auth.authenticate(db, key) is None
    with pytest.raises(NotFound):
        auth.revoke_key(db, p.key_id)
    actions = [e["action"] for e in audit.query(db, target_type="api_key")]
    assert actions == ["key.revoke", "key.create"]


def test_unknown_role_rejected(db: Database) -> None:
    with pytest.raises(InvalidInput) as ei:
        auth.create_key(db, "wizard")
    assert ei.value.code == "unknown_role"


def test_admin_has_every_role(db: Database) -> None:
    p = auth.authenticate(db, auth.create_key(db, "admin"))
    assert p is not None and p.has(Role.AUDITOR) and p.has(Role.ROBOT)
    r = auth.authenticate(db, auth.create_key(db, "robot"))
    assert r is not None and r.has(Role.ROBOT) and not r.has(Role.ANALYST)


def test_secrets_are_stored_only_as_hashes_and_audited_without_them(db: Database) -> None:
    """Issue 9, keys: a database dump or the audit trail must not hand out working keys."""
    from sqlalchemy import text

    key = auth.create_key(db, "robot", "telephony-1")
    secret = key.split("_", 2)[2]
    with db.connect() as conn:
        rows = [" ".join(str(v) for v in row) for row in conn.execute(text("SELECT * FROM api_keys"))]
    assert rows and not any(secret in row for row in rows)
    assert all(key not in str(e) and secret not in str(e) for e in audit.query(db, target_type="api_key"))
