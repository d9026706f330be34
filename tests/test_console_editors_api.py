"""The risk-expert editors' server side without a browser: the bundle found through vite's manifest
(or the rule-table editor and a clear message when it was not built), the draft simulation and the
BPMN validate/upload endpoints the editors call, their CSRF check, and the expected effect a proposal
carries to the approver."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from callvet.console import editors
from callvet.core import audit
from callvet.core.db import Database
from callvet.decision import store as policy_store
from consolesite import console_app, csrf, signed_in
from decision_fixtures import make_engine


@pytest.fixture
def site(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    app = console_app(db, tmp_path, monkeypatch, {"bob": "approver", "rita": "risk_officer"})
    engine = make_engine(db)
    app.state.ctx.override("decision", engine)
    yield {"app": app, "db": db, "engine": engine}


@pytest.fixture
def fake_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A build directory laid out as vite writes it (manifest, hashed files, a shared chunk's CSS)."""
    dist = tmp_path / "dist"
    (dist / ".vite").mkdir(parents=True)
    (dist / "assets").mkdir()
    for name in ("policy_editor-abc.js", "policy_editor-abc.css", "shared-def.css", "bpmn_modeler-123.js"):
        (dist / "assets" / name).write_text(f"/* {name} */")
    manifest = {
        "src/policy_editor.jsx": {"file": "assets/policy_editor-abc.js", "isEntry": True,
                                  "css": ["assets/policy_editor-abc.css"], "imports": ["_shared.js"]},
        "_shared.js": {"file": "assets/shared.js", "css": ["assets/shared-def.css"]},
        "src/bpmn_modeler.js": {"file": "assets/bpmn_modeler-123.js", "isEntry": True,
                                "imports": ["_shared.js"]},
    }
    (dist / ".vite" / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(editors, "BUILD_DIR", dist)
    return dist


def _client(site: dict[str, Any], name: str) -> Any:
    return signed_in(site["app"], name)


def _draft(age: int) -> dict[str, Any]:
    graph = policy_store.shipped_graph("prescreen")
    table = next(n for n in graph["nodes"] if n["type"] == "decisionTableNode")
    table["content"]["rules"][0]["screen_i0"] = f"< {age}"
    return graph


def test_unbuilt_bundle_falls_back_and_says_how_to_build(site: dict[str, Any], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(editors, "BUILD_DIR", tmp_path / "never-built")
    rita = _client(site, "rita")
    page = rita.get("/console/policies/prescreen/edit")
    assert page.status_code == 200
    assert 'id="graph-json"' in page.text and "./dev install" in page.text  # the rule-table editor
    modeler = rita.get("/console/processes/modeler")
    assert modeler.status_code == 503 and "./dev install" in modeler.text
    missing = rita.get("/console/build/assets/policy_editor.js")
    assert missing.status_code == 404 and "./dev install" in missing.text


def test_built_bundle_is_linked_from_the_manifest_and_cached(site: dict[str, Any],
                                                            fake_build: Path) -> None:
    rita = _client(site, "rita")
    page = rita.get("/console/policies/prescreen/edit")
    assert page.status_code == 200
    assert '<script type="module" src="/console/build/assets/policy_editor-abc.js">' in page.text
    assert "/console/build/assets/policy_editor-abc.css" in page.text
    assert "/console/build/assets/shared-def.css" in page.text  # CSS of an imported chunk too
    csp = page.headers["content-security-policy"]
    assert "'wasm-unsafe-eval'" in csp and "script-src 'self' 'wasm-unsafe-eval';" in csp
    assert "unsafe-eval'" not in csp.replace("'wasm-unsafe-eval'", "")
    data = json.loads(re.search(r'id="editor-data">(.*?)</script>', page.text, re.S).group(1))
    assert data["base"] == 1 and data["graph"]["nodes"] and data["simulateUrl"].endswith("/simulate")
    asset = rita.get("/console/build/assets/policy_editor-abc.js")
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    assert rita.get("/console/build/assets/nope.js").status_code == 404
    modeler = rita.get("/console/processes/modeler?key=card_issuance")
    assert modeler.status_code == 200 and "bpmn_modeler-123.js" in modeler.text
    xml = json.loads(re.search(r'id="modeler-data">(.*?)</script>', modeler.text, re.S).group(1))["xml"]
    assert 'id="card_issuance"' in xml
    assert rita.get("/console/processes/modeler?key=nope").status_code == 404
    bob = _client(site, "bob")
    assert bob.get("/console/policies/prescreen/edit").status_code == 403
    assert bob.get("/console/processes/modeler").status_code == 403


def test_simulate_then_propose_carries_the_expected_effect(site: dict[str, Any]) -> None:
    from callvet.sim.decision import simulate

    site["engine"].decide_batch(simulate(120, seed=4).applications, actor="test")
    rita = _client(site, "rita")
    token = csrf(rita.get("/console/policies").text)
    url = "/console/policies/prescreen/simulate"
    body = {"graph": _draft(35), "limit": 100}
    assert rita.post(url, json=body).status_code == 403  # no CSRF token
    assert rita.post(url, json=body, headers={"x-csrf-token": "forged"}).status_code == 403
    r = rita.post(url, json=body, headers={"x-csrf-token": token})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["replayed"] == 100 and out["changed"] > 0
    assert {m["to"] for m in out["transitions"]} == {"decline"}
    bad = _draft(35)
    table = next(n for n in bad["nodes"] if n["type"] == "decisionTableNode")
    table["content"]["rules"][-1]["screen_o0"] = '"maybe"'
    r = rita.post(url, json={"graph": bad}, headers={"x-csrf-token": token})
    assert r.status_code == 422 and "maybe" in r.json()["error"]
    assert rita.post(url, content=b"{oops", headers={"x-csrf-token": token}).status_code == 422
    assert rita.post(url, json={"graph": _draft(35), "limit": "all"},
                     headers={"x-csrf-token": token}).status_code == 422
    assert rita.post(url, json={"graph": _draft(35), "limit": 10**6},
                     headers={"x-csrf-token": token}).json()["code"] == "invalid_limit"
    assert rita.post("/console/policies/nope/simulate", json={"graph": _draft(35)},
                     headers={"x-csrf-token": token}).status_code == 404
    r = rita.post("/console/policies/prescreen/propose", follow_redirects=False,
                  data={"csrf": token, "graph": json.dumps(_draft(35)), "note": "minimum age 35",
                        "base": "1"})
    assert r.status_code == 303
    v2 = policy_store.get_version(site["db"], "prescreen", 2)
    assert v2["expected_effect"]["changed"] >= out["changed"] and v2["expected_effect"]["replayed"] == 120
    assert "examples" not in v2["expected_effect"]
    bob = _client(site, "bob")
    listing = bob.get("/console/policies").text
    assert 'data-testid="effect-prescreen-2"' in listing and "approve→decline" in listing
    refused = rita.post("/console/policies/prescreen/propose",
                        data={"csrf": token, "editor": "jdm", "base": "1", "graph": json.dumps(bad),
                              "note": "x"})
    assert refused.status_code == 422 and "maybe" in refused.text


def test_bpmn_validate_and_upload_name_the_element(site: dict[str, Any]) -> None:
    from callvet.workflow.definitions import PROCESSES_DIR

    good = (PROCESSES_DIR / "card_issuance.bpmn").read_text()
    broken = good.replace("decision == 'decline'", "__import__('os').system('true')")
    rita = _client(site, "rita")
    token = csrf(rita.get("/console/processes").text)
    h = {"x-csrf-token": token, "content-type": "application/xml"}
    assert rita.post("/console/processes/validate", content=good.encode(),
                     headers={"content-type": "application/xml"}).status_code == 403
    r = rita.post("/console/processes/validate", content=broken.encode(), headers=h)
    assert r.status_code == 422
    assert r.json()["element"].startswith("sequenceFlow#") and r.json()["code"] == "invalid_bpmn"
    ok = rita.post("/console/processes/validate", content=good.encode(), headers=h)
    assert ok.status_code == 200 and ok.json()["process_key"] == "card_issuance"
    assert rita.post("/console/processes/validate", content=b"  ", headers=h).status_code == 422
    assert rita.post("/console/processes/validate", content=b"x" * (2 << 20), headers=h).status_code == 413
    before = len(audit.query(site["db"], target_type="wf_definition"))
    assert rita.post("/console/processes/upload.json", content=broken.encode(), headers=h).status_code == 422
    up = rita.post("/console/processes/upload.json", content=good.encode(), headers=h)
    assert up.status_code == 201 and up.json()["version"] >= 1
    entries = audit.query(site["db"], target_type="wf_definition")
    assert len(entries) == before + 1 and entries[0]["actor"] == "risk_officer:user:rita"
