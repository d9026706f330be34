// Pure logic of the live task inbox (no DOM): which tasks are new since the last snapshot, their order
// (the server's: highest priority first) and their cells as text.

/** The ids in `tasks` that were not in `seen` (a Set); everything is "not new" on the first snapshot. */
export function newTaskIds(seen, tasks, first = false) {
  if (first) return new Set();
  return new Set(tasks.filter((t) => !seen.has(t.task_id)).map((t) => t.task_id));
}

/** Tasks from a `snapshot` frame, checked and sorted by priority (highest first), then due date. */
export function parseSnapshot(text) {
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    return null;
  }
  if (!body || !Array.isArray(body.tasks)) return null;
  const tasks = body.tasks.filter((t) => t && typeof t.task_id === "string");
  return tasks.sort((a, b) => (b.priority ?? 0) - (a.priority ?? 0) ||
    String(a.due_at ?? "").localeCompare(String(b.due_at ?? "")));
}

/** The cells of a task row, in the inbox's column order. */
export function taskCells(t, locale = "zh-CN") {
  const amount = typeof t.amount === "number" ? Math.round(t.amount).toLocaleString(locale) : "";
  const risk = typeof t.risk_score === "number" ? t.risk_score.toFixed(2) : "";
  return [
    (t.priority ?? 0).toFixed(1), t.name || t.task_id, amount, risk, String(t.due_at || "").slice(0, 16),
    t.assignee || "", String(t.instance_id || "").slice(0, 12),
  ];
}
