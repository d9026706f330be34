import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { elementIdOf, placement, problemOf } from "../src/bpmn_errors.js";
import { depths, layoutGraph } from "../src/layout.js";
import { postJson, signed, simulationView } from "../src/simulation.js";

const prescreen = JSON.parse(readFileSync(new URL("../../../decision/policies/prescreen.json", import.meta.url)));
const investigation = JSON.parse(readFileSync(new URL("../../../decision/policies/investigation.json", import.meta.url)));

describe("layout of hand-written graphs", () => {
  it("lays the shipped pre-screen graph out left to right by depth", () => {
    const out = layoutGraph(prescreen);
    expect(out).not.toBe(prescreen);
    const at = Object.fromEntries(out.nodes.map((n) => [n.id, n.position]));
    expect(at.input.x).toBeLessThan(at.derive.x);
    expect(at.derive.x).toBeLessThan(at.screen.x);
    expect(at.screen.x).toBeLessThan(at.output.x);
    expect(prescreen.nodes.every((n) => n.position.x === 0 && n.position.y === 0)).toBe(true); // input untouched
  });

  it("puts the branches of a switch side by side, never on one spot", () => {
    const out = layoutGraph(investigation);
    const spots = new Set(out.nodes.map((n) => `${n.position.x},${n.position.y}`));
    expect(spots.size).toBe(out.nodes.length);
    const d = depths(investigation);
    expect(d.get("blacklist")).toBe(d.get("investigate"));
    expect(d.get("output")).toBeGreaterThan(d.get("blacklist"));
  });

  it("keeps a graph whose nodes already sit apart, and survives a cycle", () => {
    const laid = layoutGraph(prescreen);
    expect(layoutGraph(laid)).toBe(laid);
    const cyclic = { nodes: [{ id: "a" }, { id: "b" }], edges: [{ sourceId: "a", targetId: "b" }, { sourceId: "b", targetId: "a" }] };
    const out = layoutGraph(cyclic);
    expect(new Set(out.nodes.map((n) => n.position.x + "," + n.position.y)).size).toBe(2);
  });
});

describe("simulation answer", () => {
  const result = {
    replayed: 300, skipped: 2, changed: 7, changed_limits: 5,
    active_mix: { approve: 200, decline: 60, refer_investigation: 40 },
    draft_mix: { approve: 195, decline: 67, refer_investigation: 38 },
    transitions: [{ from: "approve", to: "decline", count: 5 }, { from: "refer_investigation", to: "decline", count: 2 }],
    examples: [{ decision_id: "d1", application_id: "A-1", from: "approve", to: "decline", reasons_to: ["underage"] }],
  };

  it("reads as counts, the mix in outcome order with signed deltas, and the moves", () => {
    const view = simulationView(result, { replayed: "replayed", changedVerdicts: "verdicts", changedLimits: "limits", skipped: "skipped" });
    expect(view.headline).toBe("replayed: 300 · verdicts: 7 · limits: 5 · skipped: 2");
    expect(view.mix.map((m) => m.outcome)).toEqual(["approve", "refer_investigation", "decline"]);
    expect(view.mix.map((m) => signed(m.delta))).toEqual(["-5", "-2", "+7"]);
    expect(view.mix.reduce((s, m) => s + m.delta, 0)).toBe(0);
    expect(view.moves).toHaveLength(2);
    expect(view.empty).toBe(false);
  });

  it("says when there was nothing to replay", () => {
    const view = simulationView({ replayed: 0, changed: 0, changed_limits: 0, active_mix: {}, draft_mix: {} }, {});
    expect(view.empty).toBe(true);
    expect(view.mix).toEqual([]);
  });

  it("posts JSON with the CSRF header and reports refusals and network failures", async () => {
    const calls = [];
    const fake = async (url, init) => {
      calls.push({ url, init });
      return { ok: false, status: 422, json: async () => ({ error: "maybe is not an outcome", code: "invalid_policy" }) };
    };
    const out = await postJson("/console/policies/prescreen/simulate", { graph: {}, limit: 5 }, "tok", fake);
    expect(out).toEqual({ ok: false, status: 422, data: { error: "maybe is not an outcome", code: "invalid_policy" } });
    expect(calls[0].init.headers["x-csrf-token"]).toBe("tok");
    expect(JSON.parse(calls[0].init.body)).toEqual({ graph: {}, limit: 5 });
    const down = await postJson("/x", {}, "tok", async () => { throw new Error("offline"); });
    expect(down).toEqual({ ok: false, status: 0, data: { error: "offline" } });
    const html = await postJson("/x", {}, "tok", async () => ({ ok: false, status: 403, json: async () => { throw new Error("not json"); } }));
    expect(html.data.error).toBe("HTTP 403");
  });
});

describe("BPMN refusals", () => {
  it("finds the element id in the server's label", () => {
    expect(elementIdOf("sequenceFlow#Flow_decline")).toBe("Flow_decline");
    expect(elementIdOf("userTask#Review")).toBe("Review");
    expect(elementIdOf("process")).toBeNull();
    expect(elementIdOf("definitions")).toBeNull();
    expect(elementIdOf("")).toBeNull();
    expect(elementIdOf(undefined)).toBeNull();
    expect(elementIdOf("x#<img onerror=1>")).toBeNull();
  });

  it("places a refusal on the element when the diagram has it, else on the page", () => {
    const p = problemOf(422, { error: "not allowed", code: "invalid_bpmn", element: "sequenceFlow#F1" });
    expect(p).toEqual({ message: "not allowed", code: "invalid_bpmn", label: "sequenceFlow#F1", elementId: "F1" });
    expect(placement(p, (id) => id === "F1")).toBe("element");
    expect(placement(p, () => false)).toBe("page");
    expect(placement(problemOf(422, { error: "no process", element: "process" }), () => true)).toBe("page");
    expect(problemOf(201, { version: 2 })).toBeNull();
    expect(placement(null, () => true)).toBe("none");
    expect(problemOf(500, null).message).toBe("HTTP 500");
  });
});
