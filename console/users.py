"""People who sign in to the console: accounts, scrypt password hashes, lock-out, sessions.

API keys stay for robots and integrations (:mod:`callvet.core.auth`); a person signs in with a username
and password and gets a server-side session. Passwords are hashed with scrypt (memory-hard: n=2^15, r=8,
p=1 is 32 MiB per guess), the parameters stored with each hash so they can be raised later without
invalidating old hashes. After ``max_failures`` wrong passwords in a row an account is locked for
``lockout_minutes``; an unknown username costs the same scrypt work as a known one, so response time does
not tell which usernames exist. Every sign-in (good or bad), sign-out, lock and password change is written
to the audit log under the person's name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from callvet.console.tables import console_sessions, console_users
from callvet.core.audit import record
from callvet.core.auth import Principal, Role
from callvet.core.db import Database, utcnow
from callvet.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from callvet.workflow.supervise_staff import deregister_staff, register_staff
from sqlalchemy import Connection, Row, delete, insert, select, update

__all__ = [
    "CONSOLE_ROLES",
    "Person",
    "Policy",
    "Session",
    "SignInError",
    "UserStore",
    "hash_password",
    "verify_password",
]

#: Roles a person may hold (the API's roles minus the robot, which is a machine).
CONSOLE_ROLES = (Role.ANALYST, Role.APPROVER, Role.RISK_OFFICER, Role.AUDITOR, Role.ADMIN)
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
_N, _R, _P = 2**15, 8, 1
_MAXMEM = 64 * 1024 * 1024


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s + "=" * (-len(s) % 4))


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64 without padding), 16-byte random salt, 32-byte key."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, key = stored.split("$")
    except ValueError:
        return False
    if kind != "scrypt":
        return False
    got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                         maxmem=_MAXMEM, dklen=32)
    return hmac.compare_digest(got, _unb64(key))


@cache
def _dummy_hash() -> str:
    """Checked against on unknown usernames so that a miss costs as much as a wrong password (made on
    first use, not at import: importing the console must not cost a scrypt)."""
    return hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Person(Principal):
    """A signed-in person as a principal: services audit ``actor`` = ``role:user:NAME``, distinct from
    an API key's ``role:LABEL``, so the log says which human did it."""

    user_id: int = 0

    @property
    def actor(self) -> str:
        return f"{self.role.value}:user:{self.label}"

    @property
    def username(self) -> str:
        return self.label


@dataclass(frozen=True)
class Session:
    session_id: int
    person: Person
    csrf_token: str
    must_change_password: bool
    expires_at: datetime


@dataclass(frozen=True)
class Policy:
    """Lock-out and session lifetime (from ``CALLVET_CONSOLE_*`` settings)."""

    max_failures: int = 5
    lockout: timedelta = timedelta(minutes=15)
    idle: timedelta = timedelta(minutes=15)
    lifetime: timedelta = timedelta(hours=12)


class SignInError(Forbidden):
    """Wrong username or password, or a locked or disabled account (one message for all: a failed
    sign-in does not say which usernames exist)."""

    code = "sign_in_failed"


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters",
                           code="weak_password")
    if len(set(password)) < 5:
        raise InvalidInput("a password needs at least 5 different characters", code="weak_password")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(t: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes for timezone columns; they were written in UTC."""
    if t is None or t.tzinfo is not None:
        return t
    return t.replace(tzinfo=UTC)


class UserStore:
    """Accounts and sessions in the shared database; every change audited in the same transaction."""

    def __init__(self, db: Database, policy: Policy | None = None) -> None:
        self.db = db
        self.policy = policy or Policy()

    # -- accounts ---------------------------------------------------------------------------------
    def create(self, username: str, role: str, password: str, *, actor: str = "cli",
               must_change: bool = False, staff: dict[str, Any] | None = None) -> dict[str, object]:
        """A new account; a person who works tasks is also put in the supervision staff register, in
        the same transaction (``staff``: ``name``, ``skills``, ``max_amount`` for the register)."""
        if not _USERNAME.match(username):
            raise InvalidInput("username: 2-64 of a-z 0-9 . _ - starting with a letter or digit",
                               code="invalid_username")
        try:
            r = Role(role)
        except ValueError:
            r = None
        if r not in CONSOLE_ROLES:
            raise InvalidInput(f"unknown role {role!r}; one of "
                               + ", ".join(x.value for x in CONSOLE_ROLES), code="unknown_role")
        assert r is not None
        _check_password(password)
        now = utcnow()
        with self.db.begin() as conn:
            if conn.execute(select(console_users.c.id).where(console_users.c.username == username)).first():
                raise Conflict(f"user {username!r} exists", code="user_exists")
            uid = conn.execute(insert(console_users).values(
                username=username, role=r.value, password_hash=hash_password(password),
                must_change_password=must_change, failed_attempts=0, created_at=now,
                password_changed_at=now,
            )).inserted_primary_key[0]
            record(conn, actor, "console.user.create", "console_user", username,
                   details={"role": r.value, "one_time_password": must_change})
            registered = register_staff(conn, username, r.value, actor=actor, **(staff or {}))
        return {"id": uid, "username": username, "role": r.value, "staff_register": registered}

    def list(self) -> list[dict[str, object]]:
        c = console_users.c
        with self.db.connect() as conn:
            rows = conn.execute(select(c.id, c.username, c.role, c.failed_attempts, c.locked_until,
                                       c.disabled_at, c.last_login_at).order_by(c.username)).all()
        return [dict(r._mapping) for r in rows]

    def _row(self, conn: Connection, username: str) -> Row[Any] | None:
        return conn.execute(select(console_users).where(console_users.c.username == username)).first()

    def unlock(self, username: str, *, actor: str = "cli") -> None:
        with self.db.begin() as conn:
            res = conn.execute(update(console_users).where(console_users.c.username == username)
                               .values(failed_attempts=0, locked_until=None))
            if res.rowcount == 0:
                raise NotFound(f"no user {username!r}")
            record(conn, actor, "console.user.unlock", "console_user", username)

    def disable(self, username: str, *, actor: str = "cli", reason: str = "") -> None:
        with self.db.begin() as conn:
            row = self._row(conn, username)
            if row is None:
                raise NotFound(f"no user {username!r}")
            conn.execute(update(console_users).where(console_users.c.id == row.id)
                         .values(disabled_at=utcnow()))
            conn.execute(delete(console_sessions).where(console_sessions.c.user_id == row.id))
            record(conn, actor, "console.user.disable", "console_user", username, reason=reason)
            deregister_staff(conn, username, actor=actor, reason=reason)

    # -- signing in -------------------------------------------------------------------------------
    def sign_in(self, username: str, password: str, *, ip: str = "") -> tuple[str, Session]:
        """A new session's cookie token and the session; :class:`SignInError` otherwise (audited)."""
        now = utcnow()
        with self.db.connect() as conn:
            row = self._row(conn, username) if _USERNAME.match(username) else None
        if row is None:
            verify_password(password, _dummy_hash())
            self._audit_failure(username, "unknown_user", ip)
            raise SignInError("wrong username or password")
        locked = _aware(row.locked_until)
        if row.disabled_at is not None or (locked is not None and locked > now):
            verify_password(password, _dummy_hash())
            self._audit_failure(username, "disabled" if row.disabled_at else "locked", ip)
            raise SignInError("account locked or disabled")
        if not verify_password(password[:MAX_PASSWORD], row.password_hash):
            self._count_failure(row, ip)
            raise SignInError("wrong username or password")
        token = secrets.token_urlsafe(32)
        with self.db.begin() as conn:
            conn.execute(update(console_users).where(console_users.c.id == row.id)
                         .values(failed_attempts=0, locked_until=None, last_login_at=now))
            conn.execute(delete(console_sessions).where(console_sessions.c.expires_at < now))
            conn.execute(insert(console_sessions).values(
                token_hash=_token_hash(token), user_id=row.id, csrf_token=secrets.token_urlsafe(32),
                created_at=now, last_seen_at=now, expires_at=now + self.policy.lifetime))
            record(conn, f"{row.role}:user:{username}", "console.sign_in", "console_user", username,
                   details={"ip": ip})
        session = self.session(token)
        assert session is not None
        return token, session

    def _audit_failure(self, username: str, why: str, ip: str) -> None:
        with self.db.begin() as conn:
            record(conn, "anonymous", "console.sign_in_failed", "console_user", username[:100],
                   details={"why": why, "ip": ip})

    def _count_failure(self, row: Row[Any], ip: str) -> None:
        failures = int(row.failed_attempts) + 1
        lock = failures >= self.policy.max_failures
        values: dict[str, object] = {"failed_attempts": 0 if lock else failures}
        if lock:
            values["locked_until"] = utcnow() + self.policy.lockout
        with self.db.begin() as conn:
            conn.execute(update(console_users).where(console_users.c.id == row.id).values(**values))
            record(conn, "anonymous", "console.sign_in_failed", "console_user", row.username,
                   details={"why": "wrong_password", "failures": failures, "ip": ip})
            if lock:
                record(conn, "system:console", "console.user.locked", "console_user", row.username,
                       details={"minutes": self.policy.lockout.total_seconds() / 60})

    # -- sessions ---------------------------------------------------------------------------------
    def session(self, token: str | None, *, touch: bool = True) -> Session | None:
        """The live session of a cookie token, or None (unknown, expired, idle too long, user gone)."""
        if not token or len(token) > 200:
            return None
        s, u = console_sessions.c, console_users.c
        now = utcnow()
        with self.db.connect() as conn:
            row = conn.execute(
                select(s.id, s.csrf_token, s.last_seen_at, s.expires_at, u.id.label("uid"), u.username,
                       u.role, u.must_change_password, u.disabled_at)
                .join(console_users, console_users.c.id == s.user_id)
                .where(s.token_hash == _token_hash(token))).first()
        if row is None:
            return None
        last_seen, expires = _aware(row.last_seen_at), _aware(row.expires_at)
        assert last_seen is not None and expires is not None
        if row.disabled_at is not None or expires <= now or now - last_seen > self.policy.idle:
            with self.db.begin() as conn:
                conn.execute(delete(console_sessions).where(s.id == row.id))
            return None
        if touch and (now - last_seen).total_seconds() > 15:
            with self.db.begin() as conn:
                conn.execute(update(console_sessions).where(s.id == row.id).values(last_seen_at=now))
        person = Person(key_id=f"user:{row.username}", role=Role(row.role), label=row.username,
                        user_id=row.uid)
        return Session(session_id=row.id, person=person, csrf_token=row.csrf_token,
                       must_change_password=bool(row.must_change_password), expires_at=expires)

    def sign_out(self, session: Session) -> None:
        with self.db.begin() as conn:
            conn.execute(delete(console_sessions).where(console_sessions.c.id == session.session_id))
            record(conn, session.person.actor, "console.sign_out", "console_user", session.person.username)

    def change_password(self, session: Session, current: str, new: str) -> None:
        """Check the current password, set the new one, end the person's other sessions (audited)."""
        with self.db.connect() as conn:
            row = self._row(conn, session.person.username)
        if row is None or not verify_password(current[:MAX_PASSWORD], row.password_hash):
            raise InvalidInput("the current password is wrong", code="wrong_password")
        if current == new:
            raise InvalidInput("the new password must differ from the current one", code="weak_password")
        _check_password(new)
        with self.db.begin() as conn:
            conn.execute(update(console_users).where(console_users.c.id == row.id).values(
                password_hash=hash_password(new), must_change_password=False,
                password_changed_at=utcnow()))
            conn.execute(delete(console_sessions).where(console_sessions.c.user_id == row.id,
                                                        console_sessions.c.id != session.session_id))
            record(conn, session.person.actor, "console.password_change", "console_user",
                   session.person.username)
