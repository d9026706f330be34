// Pure logic of the rule-table editor (no DOM): the decision tables of a GoRules JDM graph, edits
// that return a new graph (the input is never mutated), cell checks and a summary of what changed.

/** The graph's decision tables, in node order. */
export function decisionTables(graph) {
  return (graph?.nodes || [])
    .filter((n) => n.type === "decisionTableNode" && n.content)
    .map((n) => ({
      nodeId: n.id,
      name: n.name || n.id,
      hitPolicy: n.content.hitPolicy || "first",
      inputs: n.content.inputs || [],
      outputs: n.content.outputs || [],
      rules: n.content.rules || [],
    }));
}

function clone(graph) {
  return structuredClone(graph);
}

function tableNode(graph, nodeId) {
  const node = (graph.nodes || []).find((n) => n.id === nodeId && n.type === "decisionTableNode");
  if (!node) throw new Error(`no decision table ${nodeId}`);
  return node;
}

function columnIds(node) {
  return [...(node.content.inputs || []), ...(node.content.outputs || [])].map((c) => c.id);
}

/** A new graph with rule `row`'s cell in column `columnId` set to `value`. */
export function setCell(graph, nodeId, row, columnId, value) {
  const g = clone(graph);
  const node = tableNode(g, nodeId);
  if (!columnIds(node).includes(columnId)) throw new Error(`no column ${columnId} in ${nodeId}`);
  const rule = node.content.rules[row];
  if (!rule) throw new Error(`no rule ${row} in ${nodeId}`);
  rule[columnId] = String(value);
  return g;
}

/** A fresh rule id not used in the table: `<node>_r<k>`. */
export function freshRuleId(node) {
  const used = new Set((node.content.rules || []).map((r) => r._id));
  let k = used.size;
  while (used.has(`${node.id}_r${k}`)) k += 1;
  return `${node.id}_r${k}`;
}

/** A new graph with an empty rule inserted at `at` (default: the end). */
export function addRule(graph, nodeId, at) {
  const g = clone(graph);
  const node = tableNode(g, nodeId);
  const rules = node.content.rules || (node.content.rules = []);
  const rule = { _id: freshRuleId(node) };
  for (const id of columnIds(node)) rule[id] = "";
  rules.splice(at === undefined ? rules.length : Math.max(0, Math.min(at, rules.length)), 0, rule);
  return g;
}

/** A new graph without rule `row`. */
export function removeRule(graph, nodeId, row) {
  const g = clone(graph);
  const node = tableNode(g, nodeId);
  if (!node.content.rules[row]) throw new Error(`no rule ${row} in ${nodeId}`);
  node.content.rules.splice(row, 1);
  return g;
}

/** A new graph with rule `from` moved to position `to` (order decides under hit policy "first"). */
export function moveRule(graph, nodeId, from, to) {
  const g = clone(graph);
  const rules = tableNode(g, nodeId).content.rules;
  if (!rules[from] || to < 0 || to >= rules.length) throw new Error(`cannot move rule ${from} to ${to}`);
  const [rule] = rules.splice(from, 1);
  rules.splice(to, 0, rule);
  return g;
}

/**
 * Why a cell's expression cannot be right, or null. Catches what a person mistypes (unbalanced quotes
 * or brackets, a dangling comparison); the server still compiles and probes the whole graph.
 */
export function checkCell(value, kind = "input") {
  const v = String(value ?? "").trim();
  if (v === "") return null;
  const interval = /^[[(]\s*[^,]*?\.\.[^,]*?\s*[\])]$/.test(v); // JDM ranges: [1..5], (0..1]
  let quote = null;
  const stack = [];
  const pairs = { ")": "(", "]": "[", "}": "{" };
  for (const ch of v) {
    if (quote) {
      if (ch === quote) quote = null;
      continue;
    }
    if (ch === '"' || ch === "'") quote = ch;
    else if (interval) continue;
    else if ("([{".includes(ch)) stack.push(ch);
    else if (ch in pairs && stack.pop() !== pairs[ch]) return "unbalanced brackets";
  }
  if (quote) return "unclosed quote";
  if (stack.length) return "unbalanced brackets";
  if (/(^|[^<>=!])(==|!=|<=|>=|<|>)\s*$/.test(v) || /^(==|!=|<=|>=|<|>)$/.test(v)) return "comparison without a value";
  if (kind === "output" && /^(<|>|==|!=)/.test(v)) return "an output is a value, not a condition";
  return null;
}

/** Every bad cell of the graph's tables: [{nodeId, row, columnId, message}]. */
export function problems(graph) {
  const out = [];
  for (const t of decisionTables(graph)) {
    const kinds = new Map([...t.inputs.map((c) => [c.id, "input"]), ...t.outputs.map((c) => [c.id, "output"])]);
    t.rules.forEach((rule, row) => {
      for (const [columnId, kind] of kinds) {
        const message = checkCell(rule[columnId], kind);
        if (message) out.push({ nodeId: t.nodeId, row, columnId, message });
      }
    });
  }
  return out;
}

/** What changed between two graphs' tables: {cells, added, removed} counted by rule id. */
export function summarise(before, after) {
  const out = { cells: 0, added: 0, removed: 0 };
  const old = new Map(decisionTables(before).map((t) => [t.nodeId, t]));
  for (const t of decisionTables(after)) {
    const prev = old.get(t.nodeId);
    const prevRules = new Map((prev?.rules || []).map((r) => [r._id, r]));
    const ids = new Set(t.rules.map((r) => r._id));
    for (const rule of t.rules) {
      const p = prevRules.get(rule._id);
      if (!p) {
        out.added += 1;
        continue;
      }
      for (const key of Object.keys(rule)) if (key !== "_id" && (p[key] ?? "") !== (rule[key] ?? "")) out.cells += 1;
    }
    for (const id of prevRules.keys()) if (!ids.has(id)) out.removed += 1;
  }
  return out;
}
