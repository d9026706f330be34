"""What the console's HTTP tests (no browser) share: the app on the test database with people seeded,
the scripted workflow runtime some pages need, the CSRF token read off a page, and signing in through
the login form as a person would. The browser half is :mod:`consolebrowser`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

PASSWORD = "correct horse battery staple"


def console_app(db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, people: dict[str, str],
                **settings_kw: Any) -> Any:
    """The real app on ``db`` (the case pump off, so nothing runs behind the test's back), with
    ``people`` (name -> role) created as ``callvet users create`` does."""
    from callvet.api.app import create_app
    from callvet.console.users import UserStore
    from callvet.core.settings import Settings

    monkeypatch.setenv("CALLVET_CASES_PUMP", "0")
    settings = Settings(data_dir=tmp_path / "var", database_url=db.url, **settings_kw)
    settings.ensure_dirs()
    app = create_app(settings, db=db)
    users = UserStore(db)
    for name, role in people.items():
        users.create(name, role, PASSWORD, actor="test")
    return app


def scripted_workflow(app: Any, db: Any) -> Any:
    """Put a workflow runtime that decides by the scripted policy into ``app`` (as test_api_workflow)."""
    from callvet.sim.workflow import scripted_decider
    from callvet.workflow.engine import WorkflowRuntime

    rt = WorkflowRuntime(db, settings=app.state.ctx.settings, decide=scripted_decider)
    rt.ensure_ready()
    app.state.ctx.override("workflow", rt)
    return rt


def csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no csrf field on the page"
    return m.group(1)


def signed_in(app: Any, name: str, password: str = PASSWORD) -> Any:
    """A TestClient signed in as ``name`` through the login form (its CSRF token taken from the page)."""
    from fastapi.testclient import TestClient

    client = TestClient(app)
    page = client.get("/console/login")
    r = client.post("/console/login", data={"username": name, "password": password, "csrf": csrf(page.text)},
                    follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    return client
