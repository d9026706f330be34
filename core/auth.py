"""API keys and roles.

A key is ``cv_<key_id>_<secret>``; only the SHA-256 of the secret is stored. Keys carry 32 random bytes,
so a fast hash is safe here (no password stretching needed) and keeps per-request checks cheap.

Looking the key up costs a database round trip per request, which dominated the hot path (issue 17).
:func:`authenticate` therefore keeps each key's row for at most :data:`CACHE_SECONDS` (1 s) per process:
a revocation made on any replica takes effect on every replica within that second, with no invalidation
traffic between them; on the replica that revoked it, at once. Unknown keys are never cached, so a key
is usable the moment it is created. The secret is still compared on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from callvet.core.audit import record
from callvet.core.db import Database, utcnow
from callvet.core.errors import InvalidInput, NotFound
from callvet.core.tables import api_keys
from sqlalchemy import insert, select, update

__all__ = ["CACHE_SECONDS", "MISS", "KeyCache", "Principal", "Role", "authenticate", "authenticate_cached",
           "cache_for", "create_key", "list_keys", "revoke_key"]

CACHE_SECONDS = 1.0
_CACHE_MAX = 10_000


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


@dataclass(frozen=True)
class _Entry:
    key_hash: str
    principal: Principal | None
    fetched: float


class KeyCache:
    """Key rows by key id, each trusted for ``ttl`` seconds (a monotonic clock), bounded in size.

    Only keys that exist are kept (a revoked one as ``principal=None``, so a revoked key's requests do
    not reach the database either); entries are dropped oldest first beyond ``max_entries``.
    """

    def __init__(self, ttl: float = CACHE_SECONDS, max_entries: int = _CACHE_MAX,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 <= ttl <= CACHE_SECONDS:
            raise InvalidInput(f"key cache ttl must lie in [0, {CACHE_SECONDS}] s", code="invalid_ttl")
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key_id: str) -> _Entry | None:
        e = self._entries.get(key_id)
        if e is None or self.clock() - e.fetched >= self.ttl:
            self.misses += 1
            return None
        self.hits += 1
        return e

    def put(self, key_id: str, entry: _Entry) -> None:
        with self._lock:
            self._entries.pop(key_id, None)
            self._entries[key_id] = entry
            while len(self._entries) > self.max_entries:
                self._entries.pop(next(iter(self._entries)))

    def forget(self, key_id: str) -> None:
        with self._lock:
            self._entries.pop(key_id, None)


_caches: weakref.WeakKeyDictionary[Database, KeyCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def cache_for(db: Database) -> KeyCache:
    """The process's key cache for ``db`` (one per :class:`Database` handle)."""
    c = _caches.get(db)
    if c is None:
        with _caches_lock:
            c = _caches.get(db)
            if c is None:
                c = _caches[db] = KeyCache()
    return c


def _load(db: Database, key_id: str) -> _Entry | None:
    with db.connect() as conn:
        row = conn.execute(
            select(api_keys.c.key_hash, api_keys.c.role, api_keys.c.label, api_keys.c.revoked_at).where(
                api_keys.c.key_id == key_id
            )
        ).first()
    if row is None:
        return None
    principal = None if row.revoked_at is not None else \
        Principal(key_id=key_id, role=Role(row.role), label=row.label)
    return _Entry(key_hash=row.key_hash, principal=principal, fetched=time.monotonic())


#: What :func:`authenticate_cached` returns when only the database can answer.
MISS = object()


def authenticate_cached(db: Database, token: str) -> Principal | object | None:
    """The principal of ``token`` from the process's cache alone, None when it is invalid, or
    :data:`MISS` when the database must be read (:func:`authenticate`): an event loop answers the
    common case without a thread hop and sends only misses to a thread."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "cv":
        return None
    entry = cache_for(db).get(parts[1])
    if entry is None:
        return MISS
    return _check(entry, parts[2])


def _check(entry: _Entry, secret: str) -> Principal | None:
    if entry.principal is None or not hmac.compare_digest(entry.key_hash, _hash(secret)):
        return None
    return entry.principal


def authenticate(db: Database, token: str, *, cache: KeyCache | bool | None = True) -> Principal | None:
    """The principal of ``token``, or None; ``cache=False`` always reads the database."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "cv":
        return None
    _, key_id, secret = parts
    kc = cache_for(db) if cache is True else (cache or None)
    entry = kc.get(key_id) if kc is not None else None
    if entry is None:
        entry = _load(db, key_id)
        if entry is None:
            return None
        if kc is not None:
            kc.put(key_id, _Entry(entry.key_hash, entry.principal, kc.clock()))
    return _check(entry, secret)


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
    cache_for(db).forget(key_id)
