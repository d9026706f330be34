"""The console in a real browser: Debian's Chromium driven by Playwright against a real server.

A uvicorn subprocess serves the whole API app on a temporary data directory; people are created as an
admin would (``UserStore``, what ``callvet users create`` calls). Each role signs in and does its main job
end to end: the analyst enrols a sample by upload and sees an alarm from a simulated call appear live
(Server-Sent Events fed by the call server's observer seam); the approver completes a task; the auditor
reads the trail (the risk officer's editors: tests/test_console_editors.py). Forbidden pages and a
request without the CSRF token are refused. Every page is screenshotted into the test's temporary
directory (``CALLVET_CONSOLE_SHOTS=dir`` also writes them there, which is how docs/console/*.png were
made). The server, browser and sign-in helpers are tests/consolebrowser.py.

Playwright never downloads a browser here: ``executable_path`` is Debian's ``/usr/bin/chromium``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from consolebrowser import Shots, chromium, open_task, running_server, sign_in
from speech import espeak, to_wav_bytes

ENROL = ("My account was opened at the branch on the high street. I usually pay my bills on the first of "
         "every month and I travel a lot for work.")
PROBE = ("I bought the card last spring and I use it for groceries and fuel every week. My employer is a "
         "logistics company.")
FRAUDSTER = "en-us+m3"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with running_server(tmp_path_factory.mktemp("console-server")) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Shots:
    return Shots(tmp_path_factory.mktemp("console-shots"))


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
        task_id = open_task(db, server["settings"])
    finally:
        db.dispose()
    page.wait_for_selector(f"#task-rows tr.new[data-task-id='{task_id}']", timeout=30_000)
    assert page.evaluate("window.__notReloaded") is True
    shots(page, "08b-task-arrived")
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
