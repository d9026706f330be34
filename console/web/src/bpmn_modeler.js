// The risk officer's process modeler: bpmn-js (its bpmn.io watermark kept, as its licence asks) on a
// stored or local BPMN file; the server validates or uploads it and a refusal is drawn on the element.
import BpmnModeler from "bpmn-js/lib/Modeler";
import "bpmn-js/dist/assets/diagram-js.css";
import "bpmn-js/dist/assets/bpmn-js.css";
import "bpmn-js/dist/assets/bpmn-font/css/bpmn.css";
import { placement, problemOf } from "./bpmn_errors.js";
import "./editors.css";

const data = JSON.parse(document.getElementById("modeler-data").textContent);
const csrf = document.querySelector("input[name=csrf]").value;
const status = document.getElementById("modeler-status");
const text = data.text;
const modeler = new BpmnModeler({ container: "#canvas" });
let marked = null;

function say(message, kind) {
  status.textContent = message;
  status.className = kind;
  status.dataset.kind = kind;
}

function clearProblem() {
  const overlays = modeler.get("overlays");
  overlays.remove({ type: "cv-error" });
  if (marked) modeler.get("canvas").removeMarker(marked, "cv-error");
  marked = null;
}

function showProblem(problem) {
  const registry = modeler.get("elementRegistry");
  const where = placement(problem, (id) => Boolean(registry.get(id)));
  const code = problem.code ? ` (${problem.code})` : "";
  say(`${text.refused}${problem.label ? ` ${problem.label}` : ""}${code}: ${problem.message}`, "error");
  if (where !== "element") return;
  const element = registry.get(problem.elementId);
  modeler.get("canvas").addMarker(element, "cv-error");
  marked = element;
  const note = document.createElement("div");
  note.className = "cv-overlay-error";
  note.dataset.testid = "element-error";
  note.dataset.elementId = problem.elementId;
  note.textContent = problem.message;
  const position = element.waypoints ? { top: -28, left: 0 } : { bottom: -6, left: 0 };
  modeler.get("overlays").add(element, "cv-error", { position, html: note });
  modeler.get("canvas").scrollToElement(element);
  modeler.get("selection").select(element);
}

async function load(xml) {
  clearProblem();
  try {
    const { warnings } = await modeler.importXML(xml);
    modeler.get("canvas").zoom("fit-viewport");
    say(warnings.length ? `${text.loaded} (${warnings.length} ${text.warnings})` : text.loaded, "notice");
    document.documentElement.dataset.modelerReady = "1";
  } catch (err) {
    say(`${text.unreadable}: ${err.message}`, "error");
  }
}

async function send(url) {
  clearProblem();
  const { xml } = await modeler.saveXML({ format: true });
  let response;
  try {
    response = await fetch(url, {
      method: "POST", body: xml, credentials: "same-origin",
      headers: { "content-type": "application/xml", "x-csrf-token": csrf },
    });
  } catch (err) {
    say(String(err.message || err), "error");
    return;
  }
  const body = await response.json().catch(() => ({}));
  const problem = problemOf(response.status, body);
  if (problem) {
    showProblem(problem);
    return;
  }
  const what = body.version ? `${body.process_key} v${body.version}` : body.process_key;
  say(`${body.version ? text.uploaded : text.valid}: ${what}`, "notice");
}

document.getElementById("open-file").addEventListener("change", async (e) => {
  const file = e.target.files?.[0];
  if (file) await load(await file.text());
});
document.getElementById("validate").addEventListener("click", () => send(data.validateUrl));
document.getElementById("upload").addEventListener("click", () => send(data.uploadUrl));
load(data.xml);
