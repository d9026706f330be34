// The alarm page: Server-Sent Events from /console/alarms/stream rendered into #live-alarms.
// Text only goes in through textContent, so nothing a caller says can become markup.
import { fromRecent, mergeAlarm, parseAlarm, rowCells } from "./alarmfeed.js";

const body = document.getElementById("live-alarms");
const state = document.getElementById("live-state");
const locale = document.documentElement.lang || "zh-CN";
let rows = [];

function setState(name) {
  state.textContent = state.dataset[name] || name;
  state.className = `badge ${name}`;
  state.dataset.state = name;
}

function render() {
  body.replaceChildren();
  if (rows.length === 0) {
    const tr = body.insertRow();
    tr.className = "empty";
    const td = tr.insertCell();
    td.colSpan = 8;
    td.textContent = body.dataset.empty || "";
    return;
  }
  for (const row of rows) {
    const tr = body.insertRow();
    tr.className = `tier-${row.tier}`;
    tr.dataset.callId = row.call_id;
    rowCells(row, locale).forEach((text, i) => {
      const td = tr.insertCell();
      const href = i === 1 ? `/console/calls/${encodeURIComponent(row.call_id)}`
        : i === 3 && Number.isInteger(row.identity_id) ? `/console/blacklist/${row.identity_id}` : null;
      if (href) {
        const a = document.createElement("a");
        a.href = href;
        a.textContent = text;
        td.append(a);
      } else {
        td.textContent = text;
      }
    });
  }
}

const source = new EventSource(body.dataset.stream);
source.addEventListener("open", () => setState("live"));
source.addEventListener("error", () => setState(source.readyState === EventSource.CLOSED ? "ended" : "lost"));
source.addEventListener("hello", (e) => {
  try {
    rows = fromRecent(JSON.parse(e.data).recent);
  } catch {
    rows = [];
  }
  setState("live");
  render();
});
source.addEventListener("alarm", (e) => {
  const ev = parseAlarm(e.data);
  if (ev) {
    rows = mergeAlarm(rows, ev);
    render();
  }
});
source.addEventListener("bye", () => {
  source.close();
  setState("ended");
});
