// The rule-table editor: renders each decision table of the policy graph as editable cells, keeps the
// edited graph in the form's hidden `graph` field, and refuses to submit while a cell is malformed.
import { addRule, checkCell, decisionTables, moveRule, problems, removeRule, setCell, summarise } from "./ruletable_model.js";

const form = document.getElementById("policy-form");
const host = document.getElementById("tables");
const field = form.querySelector("input[name=graph]");
const status = document.getElementById("edit-summary");
const original = JSON.parse(document.getElementById("graph-json").textContent);
const text = JSON.parse(document.getElementById("editor-text").textContent);
let graph = structuredClone(original);

function button(label, onClick, testid) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  if (testid) b.dataset.testid = testid;
  b.addEventListener("click", onClick);
  return b;
}

function update(next) {
  graph = next;
  field.value = JSON.stringify(graph);
  const s = summarise(original, graph);
  const bad = problems(graph);
  status.textContent = `${text.changed}: ${s.cells} · ${text.added}: ${s.added} · ${text.removed}: ${s.removed}` +
    (bad.length ? ` · ${text.invalid}: ${bad.length}` : "");
  status.className = bad.length ? "error" : "notice";
}

function cellInput(table, row, col, kind) {
  const input = document.createElement("input");
  input.value = table.rules[row][col.id] ?? "";
  input.dataset.testid = `cell-${table.nodeId}-${row}-${col.id}`;
  input.setAttribute("aria-label", `${table.name} ${row + 1} ${col.name}`);
  input.addEventListener("change", () => {
    const message = checkCell(input.value, kind);
    input.setCustomValidity(message ? `${text.invalid}: ${message}` : "");
    input.title = message || "";
    update(setCell(graph, table.nodeId, row, col.id, input.value));
  });
  return input;
}

function renderTable(table) {
  const section = document.createElement("section");
  section.className = "card ruletable";
  const h = document.createElement("h2");
  h.textContent = `${table.name} (${text.hitPolicy}: ${table.hitPolicy})`;
  const t = document.createElement("table");
  t.dataset.testid = `table-${table.nodeId}`;
  const head = t.createTHead().insertRow();
  head.insertCell().textContent = "#";
  for (const c of table.inputs) head.insertCell().textContent = `${c.name} ▸`;
  for (const c of table.outputs) head.insertCell().textContent = `◂ ${c.name}`;
  head.insertCell();
  const body = t.createTBody();
  table.rules.forEach((_rule, row) => {
    const tr = body.insertRow();
    tr.insertCell().textContent = String(row + 1);
    for (const c of table.inputs) tr.insertCell().append(cellInput(table, row, c, "input"));
    for (const c of table.outputs) {
      const td = tr.insertCell();
      td.className = "out";
      td.append(cellInput(table, row, c, "output"));
    }
    const ops = tr.insertCell();
    ops.className = "ops";
    if (row > 0) ops.append(button("↑", () => redraw(moveRule(graph, table.nodeId, row, row - 1))));
    if (row < table.rules.length - 1) ops.append(button("↓", () => redraw(moveRule(graph, table.nodeId, row, row + 1))));
    ops.append(button("✕", () => redraw(removeRule(graph, table.nodeId, row)), `remove-${table.nodeId}-${row}`));
  });
  section.append(h, t, button(text.addRule, () => redraw(addRule(graph, table.nodeId)), `add-${table.nodeId}`));
  return section;
}

function redraw(next) {
  update(next);
  host.replaceChildren(...decisionTables(graph).map(renderTable));
}

form.addEventListener("submit", (e) => {
  field.value = JSON.stringify(graph);
  if (problems(graph).length) {
    e.preventDefault();
    status.className = "error";
  }
});
redraw(graph);
