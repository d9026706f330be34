// Pure logic of the draft-policy simulation (no DOM): the request and how its answer reads.

/** POST JSON with the session's CSRF token; resolves to {ok, status, data} (data: parsed JSON or {error}). */
export async function postJson(url, body, csrf, fetchImpl = fetch) {
  let response;
  try {
    response = await fetchImpl(url, {
      method: "POST",
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (err) {
    return { ok: false, status: 0, data: { error: String(err?.message || err) } };
  }
  let data;
  try {
    data = await response.json();
  } catch {
    data = { error: `HTTP ${response.status}` };
  }
  return { ok: response.ok, status: response.status, data };
}

const OUTCOMES = ["approve", "refer_investigation", "refer_human", "decline"];

/** The simulation answer as what the page shows: a headline, the verdict mix before/after, the moves. */
export function simulationView(result, text) {
  const t = (k) => text?.[k] ?? k;
  const headline = `${t("replayed")}: ${result.replayed} · ${t("changedVerdicts")}: ${result.changed} · ` +
    `${t("changedLimits")}: ${result.changed_limits}` + (result.skipped ? ` · ${t("skipped")}: ${result.skipped}` : "");
  const seen = new Set([...Object.keys(result.active_mix || {}), ...Object.keys(result.draft_mix || {})]);
  const order = [...OUTCOMES.filter((o) => seen.has(o)), ...[...seen].filter((o) => !OUTCOMES.includes(o)).sort()];
  const mix = order.map((o) => {
    const before = result.active_mix?.[o] ?? 0;
    const after = result.draft_mix?.[o] ?? 0;
    return { outcome: o, before, after, delta: after - before };
  });
  const moves = (result.transitions || []).map((m) => ({ from: m.from, to: m.to, count: m.count }));
  return { headline, mix, moves, examples: result.examples || [], empty: result.replayed === 0 };
}

/** A signed count for the mix table: "+3", "-2", "0". */
export function signed(n) {
  return n > 0 ? `+${n}` : String(n);
}
