"""Console accounts and sessions without a browser: scrypt hashes, lock-out, idle timeout, cookie flags,
CSRF on every state change, first-sign-in password change, roles, audit rows and ``callvet users``.

Runs on SQLite and, when configured, PostgreSQL (the ``db`` fixture)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from callvet.console.i18n import MESSAGES
from callvet.console.tables import console_sessions, console_users
from callvet.console.users import Policy, SignInError, UserStore, hash_password, verify_password
from callvet.core import audit
from callvet.core.db import Database, utcnow
from callvet.core.errors import InvalidInput
from consolesite import PASSWORD, console_app, csrf
from sqlalchemy import select, update

ROLES = {"ana": "analyst", "bob": "approver", "rita": "risk_officer", "aud": "auditor", "adm": "admin"}


@pytest.fixture
def console(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    from fastapi.testclient import TestClient

    app = console_app(db, tmp_path, monkeypatch, ROLES, console_max_failures=3)
    with TestClient(app) as client:
        yield {"client": client, "app": app, "db": db, "users": UserStore(db),
               "settings": app.state.ctx.settings}


def _new_client(env: dict[str, Any], base_url: str = "http://testserver") -> Any:
    from fastapi.testclient import TestClient

    return TestClient(env["app"], base_url=base_url)


def sign_in(client: Any, name: str, password: str = PASSWORD) -> Any:
    page = client.get("/console/login")
    return client.post("/console/login", data={"username": name, "password": password,
                                               "csrf": csrf(page.text)}, follow_redirects=False)


def test_scrypt_hash_is_salted_and_checks(db: Database) -> None:
    a, b = hash_password(PASSWORD), hash_password(PASSWORD)
    assert a != b and a.startswith("scrypt$32768$8$1$")
    assert verify_password(PASSWORD, a) and not verify_password(PASSWORD + "x", a)
    assert not verify_password(PASSWORD, "sha256$abc") and not verify_password(PASSWORD, "garbage")
    with db.connect() as conn:
        assert conn.execute(select(console_users)).first() is None


def test_create_refuses_bad_input(db: Database) -> None:
    users = UserStore(db)
    for name, role, pw, code in [("Bad Name", "analyst", PASSWORD, "invalid_username"),
                                 ("ok", "robot", PASSWORD, "unknown_role"),
                                 ("ok", "analyst", "short", "weak_password"),
                                 ("ok", "analyst", "a" * 20, "weak_password")]:
        with pytest.raises(InvalidInput) as exc:
            users.create(name, role, pw)
        assert exc.value.code == code
    users.create("ok", "analyst", PASSWORD)
    with pytest.raises(Exception, match="exists"):
        users.create("ok", "auditor", PASSWORD)
    with db.connect() as conn:
        stored = conn.execute(select(console_users.c.password_hash)).scalar_one()
    assert PASSWORD not in stored


def test_sign_in_sets_a_strict_httponly_cookie_and_is_audited(console: dict[str, Any]) -> None:
    client = console["client"]
    r = sign_in(client, "ana")
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("cv_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    page = client.get("/console/")
    assert page.status_code == 200 and "ana" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    entries = audit.query(console["db"], action="console.sign_in")
    assert [e["actor"] for e in entries] == ["analyst:user:ana"]
    with console["db"].connect() as conn:
        token_hash = conn.execute(select(console_sessions.c.token_hash)).scalar_one()
    assert token_hash not in cookie  # only the hash of the cookie's token is stored


def test_https_cookie_is_secure_with_host_prefix(console: dict[str, Any]) -> None:
    client = _new_client(console, "https://testserver")
    r = sign_in(client, "ana")
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("__Host-cv_session="))
    assert "Secure" in cookie and "Path=/" in cookie
    assert client.get("/console/").status_code == 200


def test_wrong_password_locks_after_max_failures(console: dict[str, Any]) -> None:
    client = console["client"]
    for _ in range(3):
        r = sign_in(client, "bob", "wrong password!!")
        assert r.status_code == 401
    r = sign_in(client, "bob")  # the right password no longer helps
    assert r.status_code == 401 and "cv_session" not in r.headers.get("set-cookie", "")
    assert sign_in(client, "nobody-here").status_code == 401
    failed = audit.query(console["db"], action="console.sign_in_failed")
    assert [e["details"]["why"] for e in failed] == ["unknown_user", "locked", "wrong_password",
                                                     "wrong_password", "wrong_password"]
    assert audit.query(console["db"], action="console.user.locked")[0]["target_id"] == "bob"
    console["users"].unlock("bob", actor="test")
    assert sign_in(client, "bob").status_code == 303


def test_lockout_expires(db: Database) -> None:
    users = UserStore(db, Policy(max_failures=2, lockout=timedelta(minutes=5)))
    users.create("eve", "auditor", PASSWORD)
    for _ in range(2):
        with pytest.raises(SignInError):
            users.sign_in("eve", "wrong password!!")
    with pytest.raises(SignInError):
        users.sign_in("eve", PASSWORD)
    with db.begin() as conn:
        conn.execute(update(console_users).values(locked_until=utcnow() - timedelta(seconds=1)))
    token, session = users.sign_in("eve", PASSWORD)
    assert session.person.actor == "auditor:user:eve" and users.session(token) is not None


def test_idle_and_expired_sessions_end(db: Database) -> None:
    users = UserStore(db, Policy(idle=timedelta(minutes=15)))
    users.create("ana", "analyst", PASSWORD)
    token, _ = users.sign_in("ana", PASSWORD)
    assert users.session(token) is not None
    with db.begin() as conn:
        conn.execute(update(console_sessions).values(last_seen_at=utcnow() - timedelta(minutes=16)))
    assert users.session(token) is None
    with db.connect() as conn:  # the idle session is deleted, not just ignored
        assert conn.execute(select(console_sessions)).first() is None
    token, _ = users.sign_in("ana", PASSWORD)
    with db.begin() as conn:
        conn.execute(update(console_sessions).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert users.session(token) is None
    assert users.session("made-up-token") is None and users.session("x" * 500) is None


def test_sign_in_form_needs_its_double_submit_token(console: dict[str, Any]) -> None:
    client = _new_client(console)
    r = client.post("/console/login", data={"username": "ana", "password": PASSWORD, "csrf": "guess"},
                    follow_redirects=False)
    assert r.status_code == 403 and "cv_session" not in r.headers.get("set-cookie", "")


def test_state_changes_need_the_csrf_token_and_same_origin(console: dict[str, Any]) -> None:
    client = console["client"]
    sign_in(client, "rita")
    page = client.get("/console/policies")
    token = csrf(page.text)
    url = "/console/policies/prescreen/versions/1/reject"
    for data, headers in [({}, {}), ({"csrf": "not-it"}, {}),
                          ({"csrf": token}, {"Origin": "https://evil.example"})]:
        r = client.post(url, data=data, headers=headers)
        assert r.status_code == 403 and 'data-testid="denied"' in r.text
    assert not audit.query(console["db"], action="policy.reject")
    r = client.post("/console/logout", data={})
    assert r.status_code == 403
    r = client.post("/console/logout", headers={"X-CSRF-Token": token}, follow_redirects=False)
    assert r.status_code == 303 and client.get("/console/", follow_redirects=False).status_code == 303
    assert audit.query(console["db"], action="console.sign_out")[0]["actor"] == "risk_officer:user:rita"


ROLE_PAGES = {
    "/console/blacklist": {"ana", "adm"},
    "/console/alarms": {"ana", "adm"},
    "/console/tasks": {"bob", "adm"},
    "/console/policies": {"rita", "bob", "adm"},
    "/console/policies/prescreen/edit": {"rita", "adm"},
    "/console/processes": {"rita", "adm"},
    "/console/audit": {"aud", "adm"},
    "/console/charts": {"rita", "aud", "adm"},
    "/console/reuse": {"ana", "adm"},
    "/console/findings": {"bob", "rita", "adm"},
}


def test_each_role_opens_its_pages_and_is_refused_the_others(console: dict[str, Any]) -> None:
    for name in ROLES:
        client = _new_client(console)
        assert sign_in(client, name).status_code == 303
        home = client.get("/console/").text
        for path, allowed in ROLE_PAGES.items():
            r = client.get(path)
            assert r.status_code == (200 if name in allowed else 403), (name, path)
            if path.count("/") == 2:
                assert (f'href="{path}"' in home) == (name in allowed), (name, path)
    stream = _new_client(console).get("/console/alarms/stream")
    assert stream.status_code == 401


def test_one_time_password_must_be_changed_first(console: dict[str, Any]) -> None:
    users: UserStore = console["users"]
    users.create("neo", "approver", "one-time pass 123", must_change=True)
    client = _new_client(console)
    r = sign_in(client, "neo", "one-time pass 123")
    assert r.headers["location"] == "/console/password"
    assert client.get("/console/tasks", follow_redirects=False).headers["location"] == "/console/password"
    page = client.get("/console/password")
    token = csrf(page.text)
    r = client.post("/console/password", data={"csrf": token, "current": "one-time pass 123",
                                               "new": "tiny", "repeat": "tiny"})
    assert r.status_code == 422
    other = _new_client(console)
    assert sign_in(other, "neo", "one-time pass 123").status_code == 303
    r = client.post("/console/password", data={"csrf": token, "current": "one-time pass 123",
                                               "new": "a much better passphrase", "repeat":
                                               "a much better passphrase"}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/console/tasks").status_code == 200
    assert other.get("/console/", follow_redirects=False).status_code == 303  # other session ended
    assert sign_in(_new_client(console), "neo", "one-time pass 123").status_code == 401
    assert audit.query(console["db"], action="console.password_change")[0]["actor"] == "approver:user:neo"


def test_language_switch_and_every_template_key_is_translated(console: dict[str, Any]) -> None:
    client = _new_client(console)
    assert "登录" in client.get("/console/login").text
    r = client.get("/console/lang?to=en&back=https://evil.example/", follow_redirects=False)
    assert r.headers["location"] == "/console/"
    client.get("/console/lang?to=en&back=/console/login")
    assert "Sign in" in client.get("/console/login").text
    templates = Path(__file__).resolve().parents[1] / "console" / "templates"
    used = set()
    for f in templates.glob("*.html"):
        used |= set(re.findall(r"t\('([a-z_]+\.[a-z_.]+)'", f.read_text()))
    missing = sorted(k for k in used if k not in MESSAGES)
    assert not missing, missing
    assert all(len(v) == 2 and all(v) for v in MESSAGES.values())


def test_cli_users_create_reads_the_password_from_stdin(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from callvet.cli import app
    from callvet.core.settings import get_settings
    from typer.testing import CliRunner

    monkeypatch.setenv("CALLVET_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CALLVET_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        r = runner.invoke(app, ["users", "create", "ana", "--role", "analyst", "--password-stdin"],
                          input=PASSWORD + "\n")
        assert r.exit_code == 0, r.output
        assert PASSWORD not in r.output
        r = runner.invoke(app, ["users", "create", "--username", "bob", "--role", "approver", "--one-time"])
        assert r.exit_code == 0 and "one-time password" in r.output
        one_time = r.output.strip().rsplit(" ", 1)[1]
        r = runner.invoke(app, ["users", "create", "eve", "--role", "robot", "--password-stdin"],
                          input=PASSWORD + "\n")
        assert r.exit_code == 2 and "unknown_role" in r.output
        listed = runner.invoke(app, ["users", "list"]).output
        assert "ana\tanalyst\tactive" in listed and "bob\tapprover" in listed
        db = Database(f"sqlite:///{tmp_path / 'callvet.db'}")
        users = UserStore(db)
        _, session = users.sign_in("bob", one_time)
        assert session.must_change_password
        users.sign_in("ana", PASSWORD)
        db.dispose()
    finally:
        get_settings.cache_clear()
