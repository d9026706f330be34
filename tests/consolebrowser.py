"""What the console's browser tests share: a real server (uvicorn subprocess) on a temporary data
directory seeded with people, a robot key and one open task; Debian's Chromium under Playwright
(``executable_path``: Playwright never downloads a browser here); screenshots; signing in.

Each browser test module starts one server (module-scoped fixtures call :func:`running_server`)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"
APP = json.loads((Path(__file__).parent / "data" / "application.example.json").read_text())
PEOPLE = {"ana": "analyst", "bob": "approver", "rita": "risk_officer", "aud": "auditor", "adm": "admin"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def open_task(db: Any, settings: Any) -> str:
    """Start a card issuance whose interview was inconclusive: one open approver task (its id)."""
    from callvet.sim.workflow import scripted_decider
    from callvet.workflow.engine import WorkflowRuntime

    rt = WorkflowRuntime(db, settings=settings, decide=scripted_decider)
    rt.ensure_ready()
    inst = rt.start("card_issuance", {"application": APP}, actor="test")
    rt.deliver_message(inst["instance_id"], "investigation_result",
                       {"investigation": {"questionnaire": {"verdict": "inconclusive"}}}, actor="test")
    tasks = [t for t in rt.board.list_open(role="approver") if t["instance_id"] == inst["instance_id"]]
    assert len(tasks) == 1, tasks
    return str(tasks[0]["task_id"])


def _seed(data_dir: Path) -> dict[str, Any]:
    """Users, a robot key and one open approval task, written to the server's database before it starts
    (the workflow decides by the scripted policy here; the server's runtime takes the instance over)."""
    from callvet.console.users import UserStore
    from callvet.core import auth
    from callvet.core.db import Database
    from callvet.core.settings import Settings

    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'callvet.db'}")
    db = Database(settings.database_url)
    db.create_schema()
    users = UserStore(db)
    for name, role in PEOPLE.items():
        users.create(name, role, PASSWORD, actor="test")
    robot = auth.create_key(db, "robot", "test-robot")
    task_id = open_task(db, settings)
    db.dispose()
    return {"robot": robot, "task_id": task_id, "url": settings.database_url, "settings": settings}


@contextlib.contextmanager
def running_server(data_dir: Path) -> Iterator[dict[str, Any]]:
    seeded = _seed(data_dir)
    port = _free_port()
    env = {**os.environ, "CALLVET_DATA_DIR": str(data_dir), "CALLVET_DATABASE_URL": seeded["url"],
           "CALLVET_SPOOF": "1", "CALLVET_LOG_FORMAT": "text", "CALLVET_CASES_INTERVIEWS": "0"}
    log = (data_dir / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "callvet.api.app:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--ws", "websockets-sansio"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"console server did not start:\n{(data_dir / 'server.log').read_text()[-4000:]}")
        time.sleep(0.2)
    try:
        yield {**seeded, "base": base, "port": port, "data_dir": data_dir}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed; ./dev test installs it (APT_PACKAGES)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


class Shots:
    """Screenshots into the test's tmp dir (and ``CALLVET_CONSOLE_SHOTS`` when set)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        extra = os.environ.get("CALLVET_CONSOLE_SHOTS")
        self.extra = Path(extra) if extra else None
        self.taken: list[Path] = []

    def __call__(self, page: Any, name: str) -> None:
        path = self.root / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 5000, f"screenshot {name} looks empty"
        self.taken.append(path)
        if self.extra is not None:
            self.extra.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(self.extra / f"{name}.png"), full_page=False)


def sign_in(browser: Any, server: dict[str, Any], name: str, *, lang: str = "en") -> Any:
    context = browser.new_context(base_url=server["base"], viewport={"width": 1366, "height": 800},
                                  locale=lang)
    page = context.new_page()
    page.goto(f"/console/lang?to={lang}&back=/console/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[data-testid=login-form] button[type=submit]")
    page.wait_for_url("**/console/")
    assert name in page.inner_text("[data-testid=whoami]")
    return page
