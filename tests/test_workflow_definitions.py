from __future__ import annotations

from pathlib import Path

import pytest
from callvet.core.db import Database
from callvet.core.errors import InvalidInput, NotFound
from callvet.workflow.bpmn_build import PROCESSES, render
from callvet.workflow.definitions import PROCESSES_DIR, DefinitionStore, parse_definition
from lxml import etree

DI = "http://www.omg.org/spec/BPMN/20100524/DI"
BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CARD = (PROCESSES_DIR / "card_issuance.bpmn").read_text()


def _handlers() -> set[str]:
    from callvet.workflow.handlers import default_registry

    return default_registry(lambda call: {}).names()


@pytest.mark.parametrize("path", sorted(PROCESSES_DIR.glob("*.bpmn")), ids=lambda p: p.stem)
def test_shipped_processes_parse_and_carry_a_full_diagram(path: Path) -> None:
    parsed = parse_definition(path.read_text(), _handlers())
    assert parsed.process_key == path.stem
    root = etree.fromstring(path.read_bytes())
    flow_nodes = [
        e.get("id")
        for e in root.iter()
        if isinstance(e.tag, str)
        and etree.QName(e).namespace == BPMN
        and etree.QName(e).localname
        in (
            "startEvent",
            "endEvent",
            "serviceTask",
            "userTask",
            "scriptTask",
            "exclusiveGateway",
            "intermediateCatchEvent",
            "boundaryEvent",
        )
    ]
    flows = [e.get("id") for e in root.iter(f"{{{BPMN}}}sequenceFlow")]
    shapes = {e.get("bpmnElement") for e in root.iter("{http://www.omg.org/spec/BPMN/20100524/DI}BPMNShape")}
    edges = root.findall(f".//{{{DI}}}BPMNEdge")
    assert set(flow_nodes) <= shapes
    assert {e.get("bpmnElement") for e in edges} == set(flows)
    assert all(len(e.findall("{http://www.omg.org/spec/DD/20100524/DI}waypoint")) >= 2 for e in edges)
    users = [m for m in parsed.meta["elements"].values() if m["kind"] == "user"]
    assert users and all(u["role"] in ("approver", "risk_officer") for u in users)


def test_shipped_files_match_their_builder() -> None:
    for p in PROCESSES:
        assert (PROCESSES_DIR / f"{p.key}.bpmn").read_text() == render(p), (
            "run: callvet workflow build-processes"
        )


BROKEN = [
    ("<not-xml", "not well-formed"),
    ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>', "DOCTYPE"),
    ("<x/>", "bpmn:definitions"),
    (CARD.replace('attachedToRef="Review"', 'attachedToRef="Nowhere"'), "ReviewDeadline"),
    (CARD.replace("decision == 'decline'", "__import__('os').system('id')"), "sequenceFlow#Flow_"),
    (CARD.replace("decision == 'decline'", "().__class__.__bases__[0].__subclasses__()"), "not allowed"),
    (CARD.replace("decision == 'decline'", "open('/etc/passwd')"), "open"),
    (
        CARD.replace(
            "review_deadline</bpmn:timeDuration>", "9**9**9 if (lambda: 1)() else 1</bpmn:timeDuration>"
        ),
        "TED_ReviewDeadline",
    ),
    (
        CARD.replace('callvet:handler="issuance.issue_card"', 'callvet:handler="os.system"'),
        "serviceTask#Issue",
    ),
    (
        CARD.replace(
            '<bpmn:lane id="Lane_approver" name="approver">', '<bpmn:lane id="Lane_approver" name="intern">'
        ),
        "userTask#Review",
    ),
    (
        CARD.replace('sourceRef="GwReview" targetRef="Issue"', 'sourceRef="GwReview" targetRef="Missing"'),
        "Missing",
    ),
    (CARD.replace('isExecutable="true"', 'isExecutable="false"'), "executable"),
]


@pytest.mark.parametrize(("xml", "needle"), BROKEN, ids=range(len(BROKEN)))
def test_broken_definitions_are_rejected_naming_the_element(xml: str, needle: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_definition(xml, _handlers())
    assert err.value.code == "invalid_bpmn"
    assert needle in err.value.message, err.value.message


def test_versions_and_activation(db: Database) -> None:
    store = DefinitionStore(db, _handlers())
    d1 = store.upload(CARD, actor="t")
    d2 = store.upload(CARD.replace("Credit card issuance", "Credit card issuance 2"), actor="t")
    assert (d1.version, d1.active, d2.version, d2.active) == (1, True, 2, False)
    assert store.get("card_issuance").version == 1
    store.activate("card_issuance", 2, actor="t")
    assert store.get("card_issuance").version == 2
    assert [d.active for d in store.list()] == [False, True]
    with pytest.raises(NotFound):
        store.activate("card_issuance", 9, actor="t")
    with pytest.raises(NotFound):
        store.get("nope")
    fresh = DefinitionStore(db, _handlers())
    assert fresh.parsed(d1.id).process_key == "card_issuance"


def test_load_shipped_is_idempotent(db: Database) -> None:
    store = DefinitionStore(db, _handlers())
    assert len(store.load_shipped()) == 3
    assert store.load_shipped() == []
    store.upload(CARD.replace("Credit card issuance", "Custom"), actor="t", activate=True)
    assert store.load_shipped() == []
    assert store.get("card_issuance").version == 2
