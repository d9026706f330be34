import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  addRule, checkCell, decisionTables, moveRule, problems, removeRule, setCell, summarise,
} from "../../static/ruletable_model.js";

// The shipped pre-screen policy: the editor must handle the real graph, not a toy.
const graph = JSON.parse(readFileSync(new URL("../../../decision/policies/prescreen.json", import.meta.url)));
const table = decisionTables(graph)[0];

describe("decisionTables", () => {
  it("finds the decision tables of a JDM graph with their columns and rules", () => {
    expect(table.nodeId).toBe("screen");
    expect(table.inputs.map((c) => c.field)).toContain("age");
    expect(table.outputs.map((c) => c.field)).toEqual(["outcome", "reason"]);
    expect(table.rules.length).toBeGreaterThan(3);
    expect(decisionTables({})).toEqual([]);
  });
});

describe("edits", () => {
  it("setCell changes one cell and leaves the input graph alone", () => {
    const next = setCell(graph, "screen", 0, "screen_i0", "< 21");
    expect(decisionTables(next)[0].rules[0].screen_i0).toBe("< 21");
    expect(table.rules[0].screen_i0).toBe("< 18");
    expect(() => setCell(graph, "screen", 0, "nope", "1")).toThrow(/no column/);
    expect(() => setCell(graph, "screen", 999, "screen_i0", "1")).toThrow(/no rule/);
    expect(() => setCell(graph, "derive", 0, "x", "1")).toThrow(/no decision table/);
  });
  it("addRule inserts an empty rule with a fresh id; removeRule and moveRule reorder", () => {
    const n = table.rules.length;
    const added = addRule(graph, "screen", 0);
    const rules = decisionTables(added)[0].rules;
    expect(rules).toHaveLength(n + 1);
    expect(rules[0].screen_o0).toBe("");
    expect(new Set(rules.map((r) => r._id)).size).toBe(n + 1);
    const moved = moveRule(graph, "screen", 0, 2);
    expect(decisionTables(moved)[0].rules[2]._id).toBe(table.rules[0]._id);
    expect(() => moveRule(graph, "screen", 0, n)).toThrow();
    const removed = removeRule(graph, "screen", 1);
    expect(decisionTables(removed)[0].rules.map((r) => r._id)).not.toContain(table.rules[1]._id);
  });
});

describe("checkCell and problems", () => {
  it("accepts JDM expressions people write", () => {
    for (const v of ["", "< 18", ">= 0.55", "== 0", '"decline"', "[1..5]", "(0..1]", "'a', 'b'", "x > 1 and y < 2"]) {
      expect(checkCell(v), v).toBeNull();
    }
  });
  it("flags mistyped cells", () => {
    expect(checkCell('"decline')).toMatch(/quote/);
    expect(checkCell("max([a, 1)")).toMatch(/brackets/);
    expect(checkCell(">=")).toMatch(/comparison/);
    expect(checkCell("score >")).toMatch(/comparison/);
    expect(checkCell("> 3", "output")).toMatch(/output/);
  });
  it("lists every bad cell of the graph", () => {
    const bad = setCell(setCell(graph, "screen", 0, "screen_i0", "<"), "screen", 1, "screen_o1", '"oops');
    expect(problems(graph)).toEqual([]);
    expect(problems(bad).map((p) => [p.row, p.columnId])).toEqual([[0, "screen_i0"], [1, "screen_o1"]]);
  });
});

describe("summarise", () => {
  it("counts changed cells, added and removed rules", () => {
    let next = setCell(graph, "screen", 0, "screen_i0", "< 21");
    next = addRule(next, "screen");
    next = removeRule(next, "screen", 1);
    expect(summarise(graph, next)).toEqual({ cells: 1, added: 1, removed: 1 });
    expect(summarise(graph, graph)).toEqual({ cells: 0, added: 0, removed: 0 });
  });
});
