// The task inbox, kept current by Server-Sent Events from /console/tasks/stream; new tasks are marked.
import { newTaskIds, parseSnapshot, taskCells } from "./tasksfeed.js";

const body = document.getElementById("task-rows");
const state = document.getElementById("live-state");
const locale = document.documentElement.lang || "zh-CN";
// What the server rendered counts as seen: anything the first snapshot adds arrived since.
let seen = new Set([...body.querySelectorAll("tr[data-task-id]")].map((tr) => tr.dataset.taskId));

function setState(name) {
  state.textContent = state.dataset[name] || name;
  state.className = `badge ${name}`;
  state.dataset.state = name;
}

function render(tasks) {
  const fresh = newTaskIds(seen, tasks);
  seen = new Set(tasks.map((t) => t.task_id));
  body.replaceChildren();
  if (tasks.length === 0) {
    const td = body.insertRow().insertCell();
    td.colSpan = 7;
    td.className = "empty";
    td.textContent = body.dataset.empty || "";
    return;
  }
  for (const t of tasks) {
    const tr = body.insertRow();
    tr.dataset.taskId = t.task_id;
    if (fresh.has(t.task_id)) tr.className = "new";
    taskCells(t, locale).forEach((text, i) => {
      const td = tr.insertCell();
      if (i === 1) {
        const a = document.createElement("a");
        a.href = `/console/tasks/${encodeURIComponent(t.task_id)}`;
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
source.addEventListener("snapshot", (e) => {
  const tasks = parseSnapshot(e.data);
  if (tasks) {
    render(tasks);
    setState("live");
  }
});
source.addEventListener("bye", () => {
  source.close();
  setState("ended");
});
