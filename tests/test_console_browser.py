"""The console in a real browser: Debian's Chromium driven by Playwright against a real server.

A uvicorn subprocess serves the whole API app on a temporary data directory; people are created as an
admin would (``UserStore``, what ``callvet users create`` calls). Each role signs in and does its main job
end to end: the analyst enrols a sample by upload and sees an alarm from a simulated call appear live
(Server-Sent Events fed by the call server's observer seam); the approver completes a task; the risk
officer edits a rule table and proposes it, the approver activates it as the second person (and an
admin is refused activating their own proposal); a broken BPMN is refused with its element; the auditor
reads the trail. Forbidden pages and a request without the CSRF token are refused. Every page is
screenshotted into the test's temporary directory (``CALLVET_CONSOLE_SHOTS=dir`` also writes them there,
which is how docs/console/*.png were made).

Playwright never downloads a browser here: ``executable_path`` is Debian's ``/usr/bin/chromium``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from speech import espeak, to_wav_bytes

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"
ENROL = ("My account was opened at the branch on the high street. I usually pay my bills on the first of "
         "every month and I travel a lot for work.")
PROBE = ("I bought the card last spring and I use it for groceries and fuel every week. My employer is a "
         "logistics company.")
FRAUDSTER = "en-us+m3"
APP = json.loads((Path(__file__).parent / "data" / "application.example.json").read_text())
PEOPLE = {"ana": "analyst", "bob": "approver", "rita": "risk_officer", "aud": "auditor", "adm": "admin"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _open_task(db: Any, settings: Any) -> str:
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
    task_id = _open_task(db, settings)
    db.dispose()
    return {"robot": robot, "task_id": task_id, "url": settings.database_url, "settings": settings}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("console-server")
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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
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


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Shots:
    return Shots(tmp_path_factory.mktemp("console-shots"))


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


def test_sign_in_page_and_wrong_password(browser: Any, server: dict[str, Any], shots: Shots) -> None:
    context = browser.new_context(base_url=server["base"], viewport={"width": 1366, "height": 800})
    page = context.new_page()
    page.goto("/console/blacklist")
    assert page.url.endswith("/console/login")
    assert page.inner_text("h1") == "登录"  # zh-CN is the default language
    shots(page, "01-login")
    page.fill("input[name=username]", "ana")
    page.fill("input[name=password]", "not the password")
    page.click("form[data-testid=login-form] button[type=submit]")
    assert page.locator("[data-testid=error]").is_visible()
    cookies = {c["name"]: c for c in context.cookies()}
    assert "cv_session" not in cookies
    context.close()


def _stream_call(server: dict[str, Any], samples: np.ndarray) -> dict[str, Any]:
    from callvet.sim.calls import stream_call

    res = asyncio.run(stream_call(f"ws://127.0.0.1:{server['port']}/v1/calls/stream", samples, 8000,
                                  token=server["robot"], speed=4.0))
    return {"call_id": res.call_id, "alarms": [v for v in res.of("callvet.voiceprint") if v.get("alarm")]}


def test_analyst_enrols_by_upload_and_sees_an_alarm_live(browser: Any, server: dict[str, Any],
                                                         shots: Shots, tmp_path: Path) -> None:
    page = sign_in(browser, server, "ana")
    shots(page, "02-home-analyst")
    page.click("a[href='/console/blacklist']")
    page.fill("form[data-testid=new-identity] input[name=label]", "ring-m3")
    page.fill("form[data-testid=new-identity] input[name=notes]", "SIM-swap ring, case 2026-114")
    page.click("form[data-testid=new-identity] button[type=submit]")
    page.wait_for_url("**/console/blacklist/*")
    wav = tmp_path / "fraudster.wav"
    wav.write_bytes(to_wav_bytes(espeak(ENROL, FRAUDSTER), 16000))
    page.set_input_files("form[data-testid=upload-sample] input[name=audio]", str(wav))
    page.click("form[data-testid=upload-sample] button[type=submit]")
    # espeak is synthetic speech: the spoof countermeasure refuses it, and the page offers the audited
    # override (a reason is required), as an analyst keeping a fraudster's synthetic voice would use.
    page.wait_for_selector("[data-testid=spoof-override]", timeout=120_000)
    assert page.locator("[data-testid=error]").is_visible()
    shots(page, "03a-spoof-flagged")
    page.set_input_files("form[data-testid=upload-sample] input[name=audio]", str(wav))
    page.check("[data-testid=spoof-override] input[name=override_spoof]")
    page.fill("[data-testid=spoof-override] input[name=override_reason]",
              "the ring's synthetic voice, kept to catch it on calls")
    page.click("form[data-testid=upload-sample] button[type=submit]")
    page.wait_for_selector("[data-testid=enrolled]", timeout=120_000)
    assert page.locator("[data-testid=prints] tbody tr").count() == 1
    assert "s" in page.inner_text("[data-testid=prints] tbody tr td:nth-child(2)")
    shots(page, "03-identity-enrolled")

    page.goto("/console/alarms")
    page.wait_for_selector("[data-testid=live-state][data-state=live]", timeout=20_000)
    assert page.locator("#live-alarms tr.tier-alarm").count() == 0
    probe = np.concatenate([np.zeros(4000, np.float32), espeak(PROBE, FRAUDSTER, sample_rate=8000),
                            np.zeros(8000, np.float32)])
    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.update(_stream_call(server, probe)))
    t.start()
    row = page.wait_for_selector("#live-alarms tr.tier-alarm", timeout=120_000)
    assert "ring-m3" in row.inner_text()
    t.join(timeout=120)
    assert result["alarms"], "the robot got no alarm verdict"
    assert row.get_attribute("data-call-id") == result["call_id"]
    shots(page, "04-alarms-live")
    page.click(f"#live-alarms a[href='/console/calls/{result['call_id']}']")
    page.wait_for_selector("[data-testid=timeline]")
    assert page.locator("[data-testid=timeline] tr.ev-verdict").count() >= 1
    shots(page, "05-call-timeline")
    page.context.close()


def test_forbidden_pages_and_csrf_are_refused(browser: Any, server: dict[str, Any], shots: Shots) -> None:
    page = sign_in(browser, server, "ana")
    for path in ("/console/audit", "/console/tasks", "/console/policies/prescreen/edit",
                 "/console/processes"):
        response = page.goto(path)
        assert response is not None and response.status == 403, path
        assert page.locator("[data-testid=denied]").is_visible()
    shots(page, "06-forbidden")
    page.goto("/console/blacklist")
    before = page.locator("[data-testid=identities] tbody tr").count()
    status = page.evaluate("""async () => {
        const body = new URLSearchParams({label: "forged", notes: ""});
        const r = await fetch("/console/blacklist/identities", {method: "POST", body});
        return r.status; }""")
    assert status == 403
    forged = page.evaluate("""async () => {
        const body = new URLSearchParams({label: "forged", notes: "", csrf: "not-the-token"});
        return (await fetch("/console/blacklist/identities", {method: "POST", body})).status; }""")
    assert forged == 403
    page.reload()
    assert page.locator("[data-testid=identities] tbody tr").count() == before
    assert "forged" not in page.inner_text("[data-testid=identities]")
    page.context.close()


def test_approver_completes_a_task(browser: Any, server: dict[str, Any], shots: Shots) -> None:
    page = sign_in(browser, server, "bob")
    page.click("a[href='/console/tasks']")
    row = page.locator(f"[data-testid=tasks] tr[data-task-id='{server['task_id']}']")
    assert row.count() == 1
    shots(page, "07-tasks")
    row.locator("a").click()
    page.wait_for_selector("[data-testid=complete-form]")
    assert page.locator("[data-testid=evidence]").is_visible()
    shots(page, "08-task")
    page.select_option("select[name=review_decision]", "approve")
    page.fill("input[name=documents]", "id_card, income_proof")
    page.fill("input[name=review_note]", "income verified by phone")
    page.click("[data-testid=complete-form] button[type=submit]")
    page.wait_for_url("**/console/tasks?done=*")
    assert page.locator("[data-testid=notice]").is_visible()
    assert page.locator(f"tr[data-task-id='{server['task_id']}']").count() == 0
    page.context.close()


def test_a_new_task_appears_in_the_inbox_without_a_reload(browser: Any, server: dict[str, Any],
                                                           shots: Shots) -> None:
    from callvet.core.db import Database

    page = sign_in(browser, server, "bob")
    page.goto("/console/tasks")
    page.wait_for_selector("[data-testid=live-state][data-state=live]", timeout=20_000)
    page.evaluate("window.__notReloaded = true")
    db = Database(server["url"])
    try:
        task_id = _open_task(db, server["settings"])
    finally:
        db.dispose()
    page.wait_for_selector(f"#task-rows tr.new[data-task-id='{task_id}']", timeout=30_000)
    assert page.evaluate("window.__notReloaded") is True
    shots(page, "08b-task-arrived")
    page.context.close()


def test_rule_table_edit_propose_and_second_person_activates(browser: Any, server: dict[str, Any],
                                                             shots: Shots) -> None:
    rita = sign_in(browser, server, "rita")
    rita.click("a[href='/console/policies']")
    shots(rita, "09-policies")
    rita.click("[data-testid=edit-prescreen]")
    cell = rita.locator("[data-testid=cell-screen-0-screen_i0]")
    assert cell.input_value() == "< 18"
    cell.fill("< 21")
    cell.dispatch_event("change")
    assert "1" in rita.inner_text("[data-testid=edit-summary]")
    bad = rita.locator("[data-testid=cell-screen-1-screen_o1]")
    bad.fill('"oops')
    bad.dispatch_event("change")
    assert rita.locator("[data-testid=edit-summary].error").count() == 1
    bad.fill('"recent_delinquencies"')
    bad.dispatch_event("change")
    rita.fill("[data-testid=note]", "raise the minimum age to 21")
    shots(rita, "10-rule-editor")
    rita.click("[data-testid=propose]")
    rita.wait_for_url("**/console/policies?done=proposed*")
    version = rita.locator("[data-testid^=version-prescreen-][data-status=proposed]")
    assert version.count() == 1
    vid = version.get_attribute("data-testid")
    assert vid is not None
    number = vid.rsplit("-", 1)[1]
    assert rita.locator(f"[data-testid=activate-prescreen-{number}]").count() == 0  # not an approver
    rita.context.close()

    bob = sign_in(browser, server, "bob")
    bob.goto("/console/policies")
    bob.fill(f"[data-testid={vid}] input[name=reason]", "reviewed: matches the credit committee minutes")
    bob.click(f"[data-testid=activate-prescreen-{number}]")
    bob.wait_for_url("**/console/policies?done=activated*")
    assert bob.get_attribute(f"[data-testid={vid}]", "data-status") == "active"
    shots(bob, "11-policy-activated")
    bob.context.close()

    adm = sign_in(browser, server, "adm")
    adm.goto("/console/policies/prescreen/edit")
    c = adm.locator("[data-testid=cell-screen-0-screen_i0]")
    assert c.input_value() == "< 21"  # the editor starts from the version now active
    c.fill("< 20")
    c.dispatch_event("change")
    adm.fill("[data-testid=note]", "admin tries to be maker and checker")
    adm.click("[data-testid=propose]")
    adm.wait_for_url("**/console/policies?done=proposed*")
    own = adm.locator("[data-testid^=version-prescreen-][data-status=proposed]").get_attribute("data-testid")
    assert own is not None
    adm.click(f"[data-testid=activate-{own.removeprefix('version-')}]")
    assert adm.locator("[data-testid=error]").is_visible()
    assert "maker-checker" in adm.inner_text("[data-testid=error]")
    assert adm.get_attribute(f"[data-testid={own}]", "data-status") == "proposed"
    shots(adm, "12-maker-checker-refused")
    adm.context.close()


def test_broken_bpmn_upload_shows_the_error(browser: Any, server: dict[str, Any], shots: Shots,
                                            tmp_path: Path) -> None:
    from callvet.workflow.definitions import PROCESSES_DIR

    good = (PROCESSES_DIR / "card_issuance.bpmn").read_text()
    broken = good.replace("decision == 'decline'", "__import__('os').system('true')")
    assert broken != good
    path = tmp_path / "card_issuance_broken.bpmn"
    path.write_text(broken)
    page = sign_in(browser, server, "rita")
    page.click("a[href='/console/processes']")
    page.set_input_files("form[data-testid=upload-bpmn] input[name=bpmn]", str(path))
    page.click("form[data-testid=upload-bpmn] button[type=submit]")
    page.wait_for_selector("[data-testid=bpmn-error]")
    assert page.inner_text("[data-testid=bpmn-element]").startswith("sequenceFlow#")
    shots(page, "13-bpmn-refused")
    page.context.close()


def test_auditor_reads_the_trail(browser: Any, server: dict[str, Any], shots: Shots) -> None:
    stranger = browser.new_context(base_url=server["base"]).new_page()
    stranger.goto("/console/login")
    stranger.fill("input[name=username]", "bob")
    stranger.fill("input[name=password]", "guessing the password")
    stranger.click("form[data-testid=login-form] button[type=submit]")
    assert stranger.locator("[data-testid=error]").is_visible()
    stranger.context.close()
    page = sign_in(browser, server, "aud", lang="zh-CN")
    page.click("a[href='/console/audit']")
    text = page.inner_text("[data-testid=audit]")
    assert "console.sign_in" in text and "user:aud" in text
    page.fill("form[data-testid=audit-filter] input[name=action]", "console.sign_in_failed")
    page.click("form[data-testid=audit-filter] button[type=submit]")
    rows = page.locator("[data-testid=audit] tbody tr[data-action]")
    assert rows.count() >= 1
    assert all(a == "console.sign_in_failed" for a in
               rows.evaluate_all("rs => rs.map(r => r.dataset.action)"))
    page.goto("/console/audit")
    assert page.locator("main form[method=post]").count() == 0  # read-only: nothing to submit
    shots(page, "14-audit")
    response = page.goto("/console/blacklist")
    assert response is not None and response.status == 403
    page.context.close()
