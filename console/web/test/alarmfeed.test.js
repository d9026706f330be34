import { describe, expect, it } from "vitest";
import { fromRecent, mergeAlarm, parseAlarm, rowCells } from "../../static/alarmfeed.js";

const ev = (over = {}) => ({
  call_id: "c1", application_id: "APP-1", tier: "review", identity_id: 3, label: "ring-a", score: 0.41,
  threshold: 0.5, net_speech_s: 4.2, spoof_flag: false, spoof_kind: null, at: 1764758400, ...over,
});

describe("parseAlarm", () => {
  it("accepts an alarm frame", () => {
    expect(parseAlarm(JSON.stringify(ev({ tier: "alarm" }))).tier).toBe("alarm");
  });
  it("refuses bad JSON, a missing call id and an unknown tier", () => {
    expect(parseAlarm("{not json")).toBeNull();
    expect(parseAlarm(JSON.stringify({ tier: "alarm" }))).toBeNull();
    expect(parseAlarm(JSON.stringify(ev({ tier: "panic" })))).toBeNull();
    expect(parseAlarm("null")).toBeNull();
  });
});

describe("mergeAlarm", () => {
  it("puts a new call on top", () => {
    const rows = mergeAlarm(mergeAlarm([], ev()), ev({ call_id: "c2" }));
    expect(rows.map((r) => r.call_id)).toEqual(["c2", "c1"]);
  });
  it("keeps one row per call whose tier only rises and whose score is the best seen", () => {
    let rows = mergeAlarm([], ev({ tier: "alarm", score: 0.8, label: "ring-a" }));
    rows = mergeAlarm(rows, ev({ tier: "review", score: 0.45, label: "ring-b" }));
    expect(rows).toHaveLength(1);
    expect(rows[0].tier).toBe("alarm");
    expect(rows[0].score).toBe(0.8);
    expect(rows[0].label).toBe("ring-a");
    expect(rows[0].count).toBe(2);
  });
  it("escalates review to alarm and moves the call to the top", () => {
    let rows = mergeAlarm(mergeAlarm([], ev()), ev({ call_id: "c2" }));
    rows = mergeAlarm(rows, ev({ tier: "alarm", score: 0.9 }));
    expect(rows[0]).toMatchObject({ call_id: "c1", tier: "alarm", score: 0.9 });
  });
  it("keeps a spoof flag once seen and bounds the list", () => {
    let rows = mergeAlarm([], ev({ spoof_flag: true, spoof_kind: "synthetic" }));
    rows = mergeAlarm(rows, ev({ spoof_flag: null, spoof_kind: null }));
    expect(rows[0].spoof_flag).toBe(true);
    let many = [];
    for (let i = 0; i < 10; i += 1) many = mergeAlarm(many, ev({ call_id: `c${i}` }), 3);
    expect(many.map((r) => r.call_id)).toEqual(["c9", "c8", "c7"]);
  });
  it("does not mutate the rows it is given", () => {
    const rows = mergeAlarm([], ev());
    const copy = structuredClone(rows);
    mergeAlarm(rows, ev({ tier: "alarm" }));
    expect(rows).toEqual(copy);
  });
});

describe("rowCells and fromRecent", () => {
  it("formats score, spoof and speech", () => {
    const cells = rowCells(ev({ tier: "alarm", score: 0.81234, spoof_flag: true, spoof_kind: "replay" }), "en");
    expect(cells.slice(0, 7)).toEqual(["alarm", "c1", "APP-1", "ring-a", "0.812", "replay", "4.2 s"]);
    expect(rowCells(ev({ spoof_flag: null, score: null, application_id: null }))[2]).toBe("");
    expect(rowCells(ev({ spoof_flag: null }))[5]).toBe("?");
  });
  it("rebuilds rows from the recent alarms, newest first, skipping junk", () => {
    const rows = fromRecent([ev({ call_id: "a" }), { bogus: 1 }, ev({ call_id: "b" }), ev({ call_id: "a", tier: "alarm" })]);
    expect(rows.map((r) => [r.call_id, r.tier])).toEqual([["a", "alarm"], ["b", "review"]]);
    expect(fromRecent(undefined)).toEqual([]);
  });
});
