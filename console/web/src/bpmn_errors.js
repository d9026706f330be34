// Pure logic of the BPMN modeler page (no DOM): which diagram element a server refusal is about.

/** The element id in a refusal's label: "sequenceFlow#Flow_1" -> "Flow_1"; labels without "#" -> null. */
export function elementIdOf(label) {
  if (typeof label !== "string") return null;
  const at = label.indexOf("#");
  if (at < 0) return null;
  const id = label.slice(at + 1).trim();
  return id && /^[A-Za-z_][\w.\-]*$/.test(id) ? id : null;
}

/** A refusal (status + JSON body) as {message, code, label, elementId}; null when it is no refusal. */
export function problemOf(status, body) {
  if (status >= 200 && status < 300) return null;
  const label = body?.element || "";
  return {
    message: body?.error || `HTTP ${status}`,
    code: body?.code || "",
    label,
    elementId: elementIdOf(label),
  };
}

/** Where a refusal goes: on the element when the diagram has it, else in the page's error box. */
export function placement(problem, hasElement) {
  if (!problem) return "none";
  return problem.elementId && hasElement(problem.elementId) ? "element" : "page";
}
