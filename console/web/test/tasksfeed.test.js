import { describe, expect, it } from "vitest";
import { newTaskIds, parseSnapshot, taskCells } from "../../static/tasksfeed.js";

const task = (id, over = {}) => ({
  task_id: id, instance_id: "0123456789abcdef", name: "Review referred application", priority: 30,
  amount: 50000, risk_score: 0.4, due_at: "2026-12-04T10:44:00+00:00", assignee: "bob", ...over,
});

describe("newTaskIds", () => {
  it("marks tasks not seen before", () => {
    const fresh = newTaskIds(new Set(["a"]), [task("a"), task("b")]);
    expect([...fresh]).toEqual(["b"]);
  });
  it("marks nothing on a first snapshot", () => {
    expect(newTaskIds(new Set(), [task("a")], true).size).toBe(0);
  });
});

describe("parseSnapshot", () => {
  it("sorts by priority then due date and drops junk", () => {
    const text = JSON.stringify({ tasks: [
      task("low", { priority: 10 }), { nope: 1 }, task("late", { priority: 50, due_at: "2026-12-09" }),
      task("soon", { priority: 50, due_at: "2026-12-05" }),
    ] });
    expect(parseSnapshot(text).map((t) => t.task_id)).toEqual(["soon", "late", "low"]);
  });
  it("refuses what is not a snapshot", () => {
    expect(parseSnapshot("nope")).toBeNull();
    expect(parseSnapshot(JSON.stringify({ tasks: 3 }))).toBeNull();
    expect(parseSnapshot(JSON.stringify({ tasks: [] }))).toEqual([]);
  });
});

describe("taskCells", () => {
  it("formats priority, amount, risk, due date and a short instance id", () => {
    expect(taskCells(task("a"), "en")).toEqual(
      ["30.0", "Review referred application", "50,000", "0.40", "2026-12-04T10:44", "bob", "0123456789ab"]);
    const bare = taskCells({ task_id: "x" }, "en");
    expect(bare).toEqual(["0.0", "x", "", "", "", "", ""]);
  });
});
