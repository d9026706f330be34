"""Writes the shipped BPMN files from a compact description, with BPMNDI so they open in bpmn-js.

The shipped ``processes/*.bpmn`` are the source of truth at run time; this module exists so that their
diagram coordinates stay consistent when a flow is edited (``callvet workflow build-processes``). A test
checks that the committed files equal what this module writes.

Layout: one pool, one horizontal band per lane; a node sits at grid column ``col`` and at ``row``
(0 or 1, upper or lower track) within its lane. Edges leave the right side of their source and enter the
left side of their target, with one elbow when the rows differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

__all__ = ["PROCESSES", "Boundary", "Flow", "Node", "Process", "render", "write_all"]

NS = "http://callvet.bank/schema/bpmn"
SIZES = {
    "startEvent": (36, 36),
    "endEvent": (36, 36),
    "intermediateCatchEvent": (36, 36),
    "exclusiveGateway": (50, 50),
    "serviceTask": (100, 80),
    "userTask": (100, 80),
    "scriptTask": (100, 80),
}
LANE_H = 240
COL_W = 150
X0 = 210


@dataclass
class Node:
    id: str
    kind: str
    name: str
    lane: str
    col: int
    row: int = 0
    attrs: dict[str, str] = field(default_factory=dict)
    body: str = ""


@dataclass
class Flow:
    source: str
    target: str
    condition: str | None = None
    name: str = ""
    default: bool = False


@dataclass
class Boundary:
    id: str
    attached_to: str
    duration: str
    name: str = ""


@dataclass
class Process:
    key: str
    name: str
    lanes: list[str]
    nodes: list[Node]
    flows: list[Flow]
    boundaries: list[Boundary] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def _bounds(p: Process, n: Node) -> tuple[int, int, int, int]:
    w, h = SIZES[n.kind]
    cx = X0 + n.col * COL_W
    cy = p.lanes.index(n.lane) * LANE_H + 70 + n.row * 110
    return cx - w // 2, cy - h // 2, w, h


def _flow_id(i: int, f: Flow) -> str:
    return f"Flow_{i}_{f.source}_{f.target}"


def render(p: Process) -> str:
    """BPMN 2.0 XML with a collaboration, lanes and full BPMNDI for ``p``."""
    nodes = {n.id: n for n in p.nodes}
    incoming: dict[str, list[str]] = {n.id: [] for n in p.nodes}
    outgoing: dict[str, list[str]] = {n.id: [] for n in p.nodes}
    for b in p.boundaries:
        incoming[b.id], outgoing[b.id] = [], []
    defaults: dict[str, str] = {}
    for i, f in enumerate(p.flows):
        fid = _flow_id(i, f)
        outgoing[f.source].append(fid)
        incoming[f.target].append(fid)
        if f.default:
            defaults[f.source] = fid
    out: list[str] = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
        'xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" '
        'xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" xmlns:di="http://www.omg.org/spec/DD/20100524/DI" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xmlns:callvet="{NS}" id="Definitions_{p.key}" targetNamespace="http://callvet.bank/bpmn" '
        'exporter="callvet bpmn_build" exporterVersion="1">',
    ]
    for m in p.messages:
        out.append(f'  <bpmn:message id="Message_{m}" name="{m}" />')
    out.append(f'  <bpmn:collaboration id="Collaboration_{p.key}">')
    out.append(
        f'    <bpmn:participant id="Participant_{p.key}" name={quoteattr(p.name)} processRef="{p.key}" />'
    )
    out.append("  </bpmn:collaboration>")
    out.append(f'  <bpmn:process id="{p.key}" name={quoteattr(p.name)} isExecutable="true">')
    out.extend(_lanes(p, nodes))
    out.extend(_flow_nodes(p, incoming, outgoing, defaults))
    out.extend(_boundaries(p, outgoing))
    out.extend(_sequence_flows(p))
    out.append("  </bpmn:process>")
    out.extend(_diagram(p, nodes))
    out.append("</bpmn:definitions>")
    return "\n".join(out) + "\n"


def _lanes(p: Process, nodes: dict[str, Node]) -> list[str]:
    out = [f'    <bpmn:laneSet id="LaneSet_{p.key}">']
    for lane in p.lanes:
        out.append(f'      <bpmn:lane id="Lane_{lane}" name="{lane}">')
        for n in p.nodes:
            if n.lane == lane:
                out.append(f"        <bpmn:flowNodeRef>{n.id}</bpmn:flowNodeRef>")
        for b in p.boundaries:
            if nodes[b.attached_to].lane == lane:
                out.append(f"        <bpmn:flowNodeRef>{b.id}</bpmn:flowNodeRef>")
        out.append("      </bpmn:lane>")
    out.append("    </bpmn:laneSet>")
    return out


def _flow_nodes(
    p: Process, incoming: dict[str, list[str]], outgoing: dict[str, list[str]], defaults: dict[str, str]
) -> list[str]:
    out: list[str] = []
    for n in p.nodes:
        attrs = "".join(f" callvet:{k}={quoteattr(v)}" for k, v in n.attrs.items())
        if n.id in defaults:
            attrs += f' default="{defaults[n.id]}"'
        out.append(f'    <bpmn:{n.kind} id="{n.id}" name={quoteattr(n.name)}{attrs}>')
        out.extend(f"      <bpmn:incoming>{x}</bpmn:incoming>" for x in incoming[n.id])
        out.extend(f"      <bpmn:outgoing>{x}</bpmn:outgoing>" for x in outgoing[n.id])
        if n.kind == "intermediateCatchEvent":
            out.append(f'      <bpmn:messageEventDefinition id="MED_{n.id}" messageRef="Message_{n.body}" />')
        elif n.kind == "scriptTask":
            out.append(f"      <bpmn:script>{escape(n.body)}</bpmn:script>")
        out.append(f"    </bpmn:{n.kind}>")
    return out


def _boundaries(p: Process, outgoing: dict[str, list[str]]) -> list[str]:
    out: list[str] = []
    for b in p.boundaries:
        out.append(
            f'    <bpmn:boundaryEvent id="{b.id}" name={quoteattr(b.name)} attachedToRef="{b.attached_to}">'
        )
        out.extend(f"      <bpmn:outgoing>{x}</bpmn:outgoing>" for x in outgoing[b.id])
        out.append(f'      <bpmn:timerEventDefinition id="TED_{b.id}">')
        out.append(
            f'        <bpmn:timeDuration xsi:type="bpmn:tFormalExpression">{escape(b.duration)}'
            "</bpmn:timeDuration>"
        )
        out.append("      </bpmn:timerEventDefinition>")
        out.append("    </bpmn:boundaryEvent>")
    return out


def _sequence_flows(p: Process) -> list[str]:
    out: list[str] = []
    for i, f in enumerate(p.flows):
        fid = _flow_id(i, f)
        head = (
            f'    <bpmn:sequenceFlow id="{fid}" name={quoteattr(f.name)} sourceRef="{f.source}" '
            f'targetRef="{f.target}"'
        )
        if f.condition is None:
            out.append(head + " />")
        else:
            out.append(head + ">")
            out.append(
                f'      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">'
                f"{escape(f.condition)}</bpmn:conditionExpression>"
            )
            out.append("    </bpmn:sequenceFlow>")
    return out


def _diagram(p: Process, nodes: dict[str, Node]) -> list[str]:
    width = X0 + max(n.col for n in p.nodes) * COL_W + 120
    out = [
        f'  <bpmndi:BPMNDiagram id="Diagram_{p.key}">',
        f'    <bpmndi:BPMNPlane id="Plane_{p.key}" bpmnElement="Collaboration_{p.key}">',
        f'      <bpmndi:BPMNShape id="Participant_{p.key}_di" bpmnElement="Participant_{p.key}" '
        'isHorizontal="true">',
        f'        <dc:Bounds x="100" y="0" width="{width}" height="{LANE_H * len(p.lanes)}" />',
        "      </bpmndi:BPMNShape>",
    ]
    for i, lane in enumerate(p.lanes):
        out += [
            f'      <bpmndi:BPMNShape id="Lane_{lane}_di" bpmnElement="Lane_{lane}" isHorizontal="true">',
            f'        <dc:Bounds x="130" y="{i * LANE_H}" width="{width - 30}" height="{LANE_H}" />',
            "      </bpmndi:BPMNShape>",
        ]
    boxes: dict[str, tuple[int, int, int, int]] = {}
    for n in p.nodes:
        x, y, w, h = boxes[n.id] = _bounds(p, n)
        extra = ' isMarkerVisible="true"' if n.kind == "exclusiveGateway" else ""
        out += [
            f'      <bpmndi:BPMNShape id="{n.id}_di" bpmnElement="{n.id}"{extra}>',
            f'        <dc:Bounds x="{x}" y="{y}" width="{w}" height="{h}" />',
            "      </bpmndi:BPMNShape>",
        ]
    for b in p.boundaries:
        ax, ay, aw, ah = boxes[b.attached_to]
        boxes[b.id] = (ax + aw - 30, ay + ah - 18, 36, 36)
        x, y, w, h = boxes[b.id]
        out += [
            f'      <bpmndi:BPMNShape id="{b.id}_di" bpmnElement="{b.id}">',
            f'        <dc:Bounds x="{x}" y="{y}" width="{w}" height="{h}" />',
            "      </bpmndi:BPMNShape>",
        ]
    for i, f in enumerate(p.flows):
        sx, sy, sw, sh = boxes[f.source]
        tx, ty, tw, th = boxes[f.target]
        if f.source in {b.id for b in p.boundaries}:
            start = (sx + sw // 2, sy + sh)
        else:
            start = (sx + sw, sy + sh // 2)
        end = (tx, ty + th // 2) if tx > sx else (tx + tw // 2, ty + th if ty < sy else ty)
        points = [start]
        if start[1] != end[1]:
            points.append((start[0] + 20, start[1]) if tx > sx else (end[0], start[1]))
            if tx > sx:
                points.append((start[0] + 20, end[1]))
        points.append(end)
        out.append(f'      <bpmndi:BPMNEdge id="{_flow_id(i, f)}_di" bpmnElement="{_flow_id(i, f)}">')
        out += [f'        <di:waypoint x="{x}" y="{y}" />' for x, y in points]
        out.append("      </bpmndi:BPMNEdge>")
    out += ["    </bpmndi:BPMNPlane>", "  </bpmndi:BPMNDiagram>"]
    return out


S, A, R = "system", "approver", "risk_officer"

#: The investigation call every called product runs: request it, wait for the robot's result, collect the
#: interview's verdict (columns 4-6 of the second row).
CALL_NODES = (
    Node("RequestCall", "serviceTask", "Request investigation call", S, 4, row=1,
         attrs={"handler": "investigation.request"}),
    Node("WaitCall", "intermediateCatchEvent", "Investigation result", S, 5, row=1,
         body="investigation_result"),
    Node("Collect", "serviceTask", "Collect questionnaire result", S, 6, row=1,
         attrs={"handler": "questionnaire.collect"}),
)

CARD = Process(
    key="card_issuance",
    name="Credit card issuance",
    lanes=[S, A, R],
    messages=["investigation_result"],
    nodes=[
        Node("Received", "startEvent", "Application received", S, 0),
        Node(
            "Prepare",
            "serviceTask",
            "Apply product configuration",
            S,
            1,
            attrs={"handler": "product.configure"},
        ),
        Node(
            "Prescreen", "serviceTask", "Pre-screen decision", S, 2, attrs={"handler": "decision.prescreen"}
        ),
        Node("GwPrescreen", "exclusiveGateway", "Pre-screen outcome?", S, 3),
        *CALL_NODES,
        Node("Final", "serviceTask", "Final decision", S, 7, row=1, attrs={"handler": "decision.final"}),
        Node("GwDecision", "exclusiveGateway", "Decision?", S, 8),
        Node(
            "Review",
            "userTask",
            "Review referred application",
            A,
            9,
            attrs={"skill": "card", "supervise": "issuance", "dueHours": "24"},
        ),
        Node(
            "Escalated",
            "userTask",
            "Review escalated application",
            R,
            10,
            attrs={"skill": "card", "supervise": "issuance", "dueHours": "8"},
        ),
        Node("GwReview", "exclusiveGateway", "Reviewer approved?", S, 11),
        Node("Issue", "serviceTask", "Issue card", S, 12, attrs={"handler": "issuance.issue_card"}),
        Node("Decline", "serviceTask", "Notify decline", S, 12, row=1, attrs={"handler": "notify.decline"}),
        Node("EndIssued", "endEvent", "Card issued", S, 13),
        Node("EndDeclined", "endEvent", "Declined", S, 13, row=1),
    ],
    boundaries=[Boundary("ReviewDeadline", "Review", "review_deadline", "Review deadline passed")],
    flows=[
        Flow("Received", "Prepare"),
        Flow("Prepare", "Prescreen"),
        Flow("Prescreen", "GwPrescreen"),
        Flow("GwPrescreen", "RequestCall", "decision == 'refer_investigation'", "investigate"),
        Flow("GwPrescreen", "GwDecision", None, "decided", default=True),
        Flow("RequestCall", "WaitCall"),
        Flow("WaitCall", "Collect"),
        Flow("Collect", "Final"),
        Flow("Final", "GwDecision"),
        Flow("GwDecision", "Issue", "decision == 'approve' and credit_limit <= auto_issue_max", "approve"),
        Flow("GwDecision", "Decline", "decision == 'decline'", "decline"),
        Flow("GwDecision", "Review", None, "refer", default=True),
        Flow("Review", "GwReview"),
        Flow("ReviewDeadline", "Escalated"),
        Flow("Escalated", "GwReview"),
        Flow("GwReview", "Issue", "review_decision == 'approve'", "approved"),
        Flow("GwReview", "Decline", None, "declined", default=True),
        Flow("Issue", "EndIssued"),
        Flow("Decline", "EndDeclined"),
    ],
)

LIMIT = Process(
    key="limit_adjustment",
    name="Credit-limit adjustment",
    lanes=[S, R],
    nodes=[
        Node("Received", "startEvent", "Request received", S, 0),
        Node(
            "Prepare",
            "serviceTask",
            "Apply product configuration",
            S,
            1,
            attrs={"handler": "product.configure"},
        ),
        Node(
            "Assess",
            "serviceTask",
            "Decision engine assessment",
            S,
            2,
            attrs={"handler": "decision.prescreen"},
        ),
        Node(
            "Compute",
            "scriptTask",
            "Compute increase",
            S,
            3,
            body="increase = requested_limit - current_limit\n"
            "auto_ok = decision == 'approve' and increase <= auto_increase_max and increase > 0",
        ),
        Node("GwAuto", "exclusiveGateway", "Automatic?", S, 4),
        Node(
            "Review",
            "userTask",
            "Review limit change",
            R,
            5,
            attrs={"skill": "limit", "supervise": "limit_adjustment", "dueHours": "48"},
        ),
        Node("GwReview", "exclusiveGateway", "Approved?", S, 6),
        Node("Apply", "serviceTask", "Apply new limit", S, 7, attrs={"handler": "issuance.apply_limit"}),
        Node("Reject", "serviceTask", "Notify rejection", S, 7, row=1, attrs={"handler": "notify.decline"}),
        Node("EndApplied", "endEvent", "Limit changed", S, 8),
        Node("EndRejected", "endEvent", "Rejected", S, 8, row=1),
    ],
    flows=[
        Flow("Received", "Prepare"),
        Flow("Prepare", "Assess"),
        Flow("Assess", "Compute"),
        Flow("Compute", "GwAuto"),
        Flow("GwAuto", "Apply", "auto_ok", "automatic"),
        Flow("GwAuto", "Reject", "decision == 'decline' or increase <= 0", "rejected"),
        Flow("GwAuto", "Review", None, "review", default=True),
        Flow("Review", "GwReview"),
        Flow("GwReview", "Apply", "review_decision == 'approve'", "approved"),
        Flow("GwReview", "Reject", None, "rejected", default=True),
        Flow("Apply", "EndApplied"),
        Flow("Reject", "EndRejected"),
    ],
)

LOAN = Process(
    key="instalment_loan",
    name="Instalment loan",
    lanes=[S, A, R],
    messages=["investigation_result"],
    nodes=[
        Node("Received", "startEvent", "Loan application received", S, 0),
        Node("Prepare", "serviceTask", "Apply product band", S, 1, attrs={"handler": "product.configure"}),
        Node(
            "Prescreen", "serviceTask", "Pre-screen decision", S, 2, attrs={"handler": "decision.prescreen"}
        ),
        Node("GwCalls", "exclusiveGateway", "Calls needed?", S, 3),
        *CALL_NODES,
        Node("CountCall", "scriptTask", "Count call", S, 7, row=1, body="calls_done = calls_done + 1"),
        Node("GwMoreCalls", "exclusiveGateway", "More calls?", S, 8, row=1),
        Node("Final", "serviceTask", "Final decision", S, 9, row=1, attrs={"handler": "decision.final"}),
        Node("GwDecision", "exclusiveGateway", "Decision?", S, 10),
        Node(
            "Review1",
            "userTask",
            "Loan review (level 1)",
            A,
            11,
            attrs={"skill": "instalment", "supervise": "issuance", "dueHours": "24", "level": "1"},
        ),
        Node("GwLevel2", "exclusiveGateway", "Second level needed?", S, 12),
        Node(
            "Review2",
            "userTask",
            "Loan review (level 2)",
            R,
            13,
            attrs={"skill": "instalment", "supervise": "issuance", "dueHours": "24", "level": "2"},
        ),
        Node("GwReview", "exclusiveGateway", "Approved?", S, 14),
        Node("Disburse", "serviceTask", "Disburse loan", S, 15, attrs={"handler": "issuance.disburse_loan"}),
        Node("Decline", "serviceTask", "Notify decline", S, 15, row=1, attrs={"handler": "notify.decline"}),
        Node("EndDisbursed", "endEvent", "Loan disbursed", S, 16),
        Node("EndDeclined", "endEvent", "Declined", S, 16, row=1),
    ],
    flows=[
        Flow("Received", "Prepare"),
        Flow("Prepare", "Prescreen"),
        Flow("Prescreen", "GwCalls"),
        Flow(
            "GwCalls",
            "GwDecision",
            "decision == 'decline' or (calls_required == 0 and decision != 'refer_investigation')",
            "no call",
        ),
        Flow("GwCalls", "RequestCall", None, "call", default=True),
        Flow("RequestCall", "WaitCall"),
        Flow("WaitCall", "Collect"),
        Flow("Collect", "CountCall"),
        Flow("CountCall", "GwMoreCalls"),
        Flow("GwMoreCalls", "RequestCall", "calls_done < calls_required", "another call"),
        Flow("GwMoreCalls", "Final", None, "done", default=True),
        Flow("Final", "GwDecision"),
        Flow("GwDecision", "Decline", "decision == 'decline'", "decline"),
        Flow(
            "GwDecision",
            "Disburse",
            "decision == 'approve' and auto_approve and review_levels == 0",
            "automatic",
        ),
        Flow("GwDecision", "Review1", None, "review", default=True),
        Flow("Review1", "GwLevel2"),
        Flow("GwLevel2", "Review2", "review_decision == 'approve' and review_levels >= 2", "level 2"),
        Flow("GwLevel2", "GwReview", None, "", default=True),
        Flow("Review2", "GwReview"),
        Flow("GwReview", "Disburse", "review_decision == 'approve'", "approved"),
        Flow("GwReview", "Decline", None, "declined", default=True),
        Flow("Disburse", "EndDisbursed"),
        Flow("Decline", "EndDeclined"),
    ],
)

PROCESSES = [CARD, LIMIT, LOAN]


def write_all(directory: Path | None = None) -> list[Path]:
    """Write every shipped process to ``directory`` (default: the package's ``processes/``)."""
    directory = directory or Path(__file__).resolve().parent / "processes"
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for p in PROCESSES:
        path = directory / f"{p.key}.bpmn"
        path.write_text(render(p), encoding="utf-8")
        paths.append(path)
    return paths
