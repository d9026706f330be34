// Pure logic of the live alarm list (no DOM): merging alarm events into rows and formatting them.
// Kept apart from alarms.js so Vitest can test it without a browser.

const TIER_RANK = { review: 1, alarm: 2 };

/** An alarm event from the server, checked; null when the frame is not one. */
export function parseAlarm(text) {
  let ev;
  try {
    ev = JSON.parse(text);
  } catch {
    return null;
  }
  if (!ev || typeof ev !== "object" || typeof ev.call_id !== "string" || !(ev.tier in TIER_RANK)) {
    return null;
  }
  return ev;
}

/**
 * Rows (newest first, one per call) after `ev` arrives. A call already listed keeps one row: its
 * tier only rises (review -> alarm), its score is the best seen, and the row moves to the top.
 * At most `max` rows are kept.
 */
export function mergeAlarm(rows, ev, max = 100) {
  const old = rows.find((r) => r.call_id === ev.call_id);
  let merged = { ...ev, count: 1 };
  if (old) {
    const tier = TIER_RANK[ev.tier] >= TIER_RANK[old.tier] ? ev.tier : old.tier;
    const score = Math.max(num(old.score), num(ev.score));
    const best = num(ev.score) >= num(old.score) ? ev : old;
    merged = {
      ...old, ...ev, tier, score: Number.isFinite(score) ? score : null,
      label: best.label, identity_id: best.identity_id,
      spoof_flag: ev.spoof_flag ?? old.spoof_flag, spoof_kind: ev.spoof_kind ?? old.spoof_kind,
      count: (old.count || 1) + 1,
    };
  }
  return [merged, ...rows.filter((r) => r.call_id !== ev.call_id)].slice(0, max);
}

function num(x) {
  return typeof x === "number" && Number.isFinite(x) ? x : -Infinity;
}

/** The cells of one row as text, in the order of the table's columns. */
export function rowCells(row, locale = "zh-CN") {
  const score = typeof row.score === "number" ? row.score.toFixed(3) : "";
  const spoof = row.spoof_flag === true ? (row.spoof_kind || "spoof") : row.spoof_flag === false ? "-" : "?";
  const speech = typeof row.net_speech_s === "number" ? `${row.net_speech_s.toFixed(1)} s` : "";
  const at = typeof row.at === "number" ? new Date(row.at * 1000).toLocaleTimeString(locale) : "";
  return [row.tier, row.call_id, row.application_id || "", row.label || "", score, spoof, speech, at];
}

/** Rows from the `hello` frame's recent alarms (oldest first on the wire). */
export function fromRecent(recent, max = 100) {
  let rows = [];
  for (const ev of recent || []) {
    if (ev && typeof ev.call_id === "string" && ev.tier in TIER_RANK) rows = mergeAlarm(rows, ev, max);
  }
  return rows;
}
