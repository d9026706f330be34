"""The risk expert's editors in a real browser (Debian's Chromium under Playwright, a real server):
the GoRules JDM editor edits a rule table of the active pre-screen policy, the draft is simulated
against the applications the server has decided, proposed, and activated by a second person (an admin
who proposes is refused activating their own); bpmn-js opens a broken BPMN file, the upload is refused
and the error is drawn on the diagram element the server names. Screenshots of each page.

These need the editors' bundle (``./dev install`` builds it in console/web/dist); without it the test
fails saying so rather than skipping, since the bundle is part of the install.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from callvet.console import editors
from consolebrowser import Shots, chromium, running_server, sign_in

DECIDED = 150


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if editors.bundle("src/policy_editor.jsx") is None or editors.bundle("src/bpmn_modeler.js") is None:
        pytest.fail(f"{editors.NOT_BUILT} (looked in {editors.BUILD_DIR})")
    from callvet.sim.decision import simulate

    with running_server(tmp_path_factory.mktemp("console-editors")) as s:
        items = [{"application": a.model_dump(mode="json")} for a in simulate(DECIDED, seed=3).applications]
        r = httpx.post(f"{s['base']}/v1/decisions:batch", json={"items": items}, timeout=120,
                       headers={"Authorization": f"Bearer {s['robot']}"})
        assert r.status_code == 200, r.text
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Shots:
    return Shots(tmp_path_factory.mktemp("console-editor-shots"))


def _watch(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def _edit_cell(page: Any, row: int, col: int, value: str) -> None:
    """Type into a JDM decision-table cell (a CodeMirror editor) as a person would."""
    cell = page.locator(f"tr.table-row[data-virtual-index='{row}'] td:nth-child({col + 2}) .cm-content")
    cell.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(value)
    page.locator("[data-testid=edit-summary]").click()


def _versions(server: dict[str, Any], key: str) -> list[int]:
    from callvet.core.db import Database
    from callvet.workflow.definitions import DefinitionStore

    db = Database(server["url"])
    try:
        return [d.version for d in DefinitionStore(db).list() if d.process_key == key]
    finally:
        db.dispose()


def _graph(page: Any) -> dict[str, Any]:
    return json.loads(page.input_value("#policy-form input[name=graph]"))


def _screen_rules(graph: dict[str, Any]) -> list[dict[str, Any]]:
    return next(n for n in graph["nodes"] if n["id"] == "screen")["content"]["rules"]


def test_jdm_edit_simulate_propose_and_a_second_person_activates(browser: Any, server: dict[str, Any],
                                                                  shots: Shots) -> None:
    rita = sign_in(browser, server, "rita")
    errors = _watch(rita)
    rita.goto("/console/policies")
    rita.click("[data-testid=edit-prescreen]")
    rita.wait_for_selector("[data-testid=rf__node-screen]", timeout=60_000)
    shots(rita, "20-jdm-graph")
    rita.locator("[data-testid=rf__node-screen] button:has-text('Edit Table')").click()
    rita.wait_for_selector("tr.table-row[data-virtual-index='0']")
    assert _screen_rules(_graph(rita))[0]["screen_i0"] == "< 18"
    _edit_cell(rita, 0, 0, "< 35")
    rita.wait_for_selector("[data-testid=edit-summary]:has-text(': 1 ·')")
    assert _screen_rules(_graph(rita))[0]["screen_i0"] == "< 35"
    shots(rita, "21-jdm-table-edited")
    rita.click("[data-testid=simulate]")
    sim = rita.wait_for_selector("[data-testid=simulation]", timeout=60_000)
    changed = int(sim.get_attribute("data-changed") or "-1")
    assert 0 < changed < DECIDED
    assert f"{DECIDED}" in rita.inner_text("[data-testid=simulation-headline]")
    moves = rita.locator("[data-testid=simulation-moves] tbody tr").all_inner_texts()
    assert moves and all("decline" in m.split("\t")[1] for m in moves)
    shots(rita, "22-jdm-simulated")
    rita.fill("[data-testid=note]", "minimum age 35 for the pre-screen (committee minute 12)")
    rita.click("[data-testid=propose]")
    rita.wait_for_url("**/console/policies?done=proposed*")
    version = rita.locator("[data-testid^=version-prescreen-][data-status=proposed]")
    assert version.count() == 1
    vid = version.get_attribute("data-testid") or ""
    number = vid.rsplit("-", 1)[1]
    effect = rita.inner_text(f"[data-testid=effect-prescreen-{number}]")
    assert f"{DECIDED}" in effect and "decline" in effect
    assert rita.locator(f"[data-testid=activate-prescreen-{number}]").count() == 0  # not an approver
    assert errors == []
    rita.context.close()

    bob = sign_in(browser, server, "bob")
    bob.goto("/console/policies")
    bob.fill(f"[data-testid={vid}] input[name=reason]", "checked the simulation: only under-35s move")
    bob.click(f"[data-testid=activate-prescreen-{number}]")
    bob.wait_for_url("**/console/policies?done=activated*")
    assert bob.get_attribute(f"[data-testid={vid}]", "data-status") == "active"
    shots(bob, "23-policy-activated")
    bob.context.close()

    adm = sign_in(browser, server, "adm")
    adm.goto("/console/policies/prescreen/edit")
    adm.wait_for_selector("[data-testid=rf__node-screen]", timeout=60_000)
    assert _screen_rules(_graph(adm))[0]["screen_i0"] == "< 35"  # starts from the version now active
    adm.fill("[data-testid=note]", "admin tries to be maker and checker")
    adm.click("[data-testid=propose]")
    adm.wait_for_url("**/console/policies?done=proposed*")
    own = adm.locator("[data-testid^=version-prescreen-][data-status=proposed]").get_attribute("data-testid")
    assert own is not None
    adm.click(f"[data-testid=activate-{own.removeprefix('version-')}]")
    assert "maker-checker" in adm.inner_text("[data-testid=error]")
    assert adm.get_attribute(f"[data-testid={own}]", "data-status") == "proposed"
    adm.context.close()


def test_broken_bpmn_is_refused_with_the_error_on_its_element(browser: Any, server: dict[str, Any],
                                                              shots: Shots, tmp_path: Path) -> None:
    from callvet.workflow.definitions import PROCESSES_DIR

    good = (PROCESSES_DIR / "card_issuance.bpmn").read_text()
    broken = good.replace("decision == 'decline'", "__import__('os').system('true')")
    assert broken != good
    path = tmp_path / "card_issuance_broken.bpmn"
    path.write_text(broken)
    page = sign_in(browser, server, "rita")
    errors = _watch(page)
    page.goto("/console/processes")
    page.click("[data-testid=model-card_issuance-1]")
    page.wait_for_selector("html[data-modeler-ready='1']", timeout=60_000)
    assert page.locator(".bjs-powered-by").count() == 1  # the bpmn.io watermark its licence asks for
    shots(page, "24-bpmn-modeler")
    page.set_input_files("[data-testid=open-file]", str(path))
    page.wait_for_selector("[data-testid=modeler-status][data-kind=notice]")
    page.click("[data-testid=upload]")
    note = page.wait_for_selector("[data-testid=element-error]", timeout=60_000)
    element = note.get_attribute("data-element-id")
    assert element
    flow = broken[:broken.index("__import__")].rsplit("<bpmn:sequenceFlow id=\"", 1)[1].split("\"", 1)[0]
    assert element == flow  # the flow whose condition the sandbox refused
    assert page.locator(f".djs-element.cv-error[data-element-id='{element}']").count() == 1
    assert f"sequenceFlow#{element}" in page.inner_text("[data-testid=modeler-status]")
    shots(page, "25-bpmn-error-on-element")
    assert _versions(server, "card_issuance") == [1]  # nothing stored
    page.set_input_files("[data-testid=open-file]", str(PROCESSES_DIR / "card_issuance.bpmn"))
    page.wait_for_selector("[data-testid=modeler-status][data-kind=notice]")
    assert page.locator(".djs-element.cv-error").count() == 0
    page.click("[data-testid=validate]")
    page.wait_for_selector("[data-testid=modeler-status][data-kind=notice]:has-text('card_issuance')")
    assert _versions(server, "card_issuance") == [1]  # validating stores nothing
    page.click("[data-testid=upload]")
    page.wait_for_selector("[data-testid=modeler-status][data-kind=notice]:has-text('card_issuance v2')")
    assert _versions(server, "card_issuance") == [1, 2]  # what bpmn-js saved passes the server's checks
    assert errors == []
    page.context.close()


def test_charts_show_the_decisions_made(browser: Any, server: dict[str, Any], shots: Shots) -> None:
    page = sign_in(browser, server, "aud")
    page.click("a[href='/console/charts']")
    page.wait_for_selector("[data-testid=chart-mix]")
    values = page.locator("[data-testid=chart-mix] rect[data-value]").evaluate_all(
        "rs => rs.map(r => Number(r.dataset.value))")
    assert sum(values) == DECIDED
    assert page.locator("[data-testid=chart-reasons] rect[data-value]").count() >= 1
    assert page.locator("[data-testid=gauge-coverage]").is_visible()
    shots(page, "26-charts")
    page.context.close()
