// Pure logic (no DOM): positions for a JDM graph whose nodes have none worth drawing. The shipped
// policies are written by hand and leave every node at (0, 0), where the editor would stack them.

const DX = 300;
const DY = 130;

function stacked(nodes) {
  const seen = new Set();
  for (const n of nodes) {
    const p = n.position;
    if (!p || typeof p.x !== "number" || typeof p.y !== "number") return true;
    const key = `${Math.round(p.x)},${Math.round(p.y)}`;
    if (seen.has(key)) return true;
    seen.add(key);
  }
  return false;
}

/** Depth of each node: the longest path from a node without incoming edges (cycles cut). */
export function depths(graph) {
  const nodes = graph?.nodes || [];
  const incoming = new Map(nodes.map((n) => [n.id, []]));
  for (const e of graph?.edges || []) if (incoming.has(e.targetId) && incoming.has(e.sourceId)) incoming.get(e.targetId).push(e.sourceId);
  const depth = new Map();
  const visiting = new Set();
  const visit = (id) => {
    if (depth.has(id)) return depth.get(id);
    if (visiting.has(id)) return 0;
    visiting.add(id);
    const d = Math.max(-1, ...incoming.get(id).map(visit)) + 1;
    visiting.delete(id);
    depth.set(id, d);
    return d;
  };
  for (const n of nodes) visit(n.id);
  return depth;
}

/** The graph unchanged when its nodes already sit apart; else a copy laid out left to right by depth. */
export function layoutGraph(graph) {
  const nodes = graph?.nodes || [];
  if (!stacked(nodes)) return graph;
  const depth = depths(graph);
  const row = new Map();
  const out = structuredClone(graph);
  for (const n of out.nodes) {
    const d = depth.get(n.id) ?? 0;
    const r = row.get(d) ?? 0;
    row.set(d, r + 1);
    n.position = { x: d * DX, y: r * DY };
  }
  return out;
}
