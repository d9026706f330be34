// The risk officer's policy editor: the GoRules JDM editor on the policy graph, a simulation of the
// draft against stored applications, and the server-rendered propose form this keeps in step.
import "./monaco_local.js";
import { DecisionGraph, JdmConfigProvider } from "@gorules/jdm-editor";
import "@gorules/jdm-editor/dist/style.css";
import { StrictMode, useCallback, useState } from "react";
import { createRoot } from "react-dom/client";
import { summarise } from "../../static/ruletable_model.js";
import { layoutGraph } from "./layout.js";
import { postJson, signed, simulationView } from "./simulation.js";
import "./editors.css";

const data = JSON.parse(document.getElementById("editor-data").textContent);
const form = document.getElementById("policy-form");
const field = form.querySelector("input[name=graph]");
const csrf = form.querySelector("input[name=csrf]").value;
const text = data.text;
const start = layoutGraph(data.graph);

function Simulation({ state }) {
  if (state.busy) return <p className="notice" data-testid="simulation-busy">{text.simulating}</p>;
  if (state.error) return <p className="error" role="alert" data-testid="simulation-error">{state.error}</p>;
  if (!state.result) return null;
  const view = simulationView(state.result, text);
  return (
    <section className="card" data-testid="simulation" data-changed={state.result.changed}>
      <h2>{text.simulation}</h2>
      <p data-testid="simulation-headline">{view.headline}</p>
      {view.empty ? <p className="muted">{text.noRecords}</p> : (
        <div className="row">
          <table data-testid="simulation-mix">
            <thead><tr><th>{text.outcome}</th><th>{text.active}</th><th>{text.draft}</th><th>Δ</th></tr></thead>
            <tbody>{view.mix.map((m) => (
              <tr key={m.outcome}><td>{m.outcome}</td><td>{m.before}</td><td>{m.after}</td><td>{signed(m.delta)}</td></tr>
            ))}</tbody>
          </table>
          <table data-testid="simulation-moves">
            <thead><tr><th>{text.from}</th><th>{text.to}</th><th>{text.count}</th></tr></thead>
            <tbody>{view.moves.map((m) => (
              <tr key={`${m.from}-${m.to}`}><td>{m.from}</td><td>{m.to}</td><td>{m.count}</td></tr>
            ))}</tbody>
          </table>
        </div>
      )}
      {view.examples.length > 0 && (
        <details><summary>{text.examples}</summary><ul>{view.examples.map((e) => (
          <li key={e.decision_id}><code>{e.application_id}</code>: {e.from} → {e.to} ({e.reasons_to.join(", ")})</li>
        ))}</ul></details>
      )}
    </section>
  );
}

function Editor() {
  const [graph, setGraph] = useState(start);
  const [sim, setSim] = useState({});
  const changed = summarise(data.graph, graph);
  const onChange = useCallback((next) => {
    setGraph(next);
    field.value = JSON.stringify(next);
    setSim({});
  }, []);
  const simulate = async () => {
    setSim({ busy: true });
    const out = await postJson(data.simulateUrl, { graph, limit: data.limit }, csrf);
    setSim(out.ok ? { result: out.data } : { error: out.data.error || `HTTP ${out.status}` });
  };
  return (
    <>
      <div className="cv-bar">
        <span data-testid="edit-summary">{`${text.changed}: ${changed.cells} · ${text.added}: ${changed.added} · ${text.removed}: ${changed.removed}`}</span>
        <button type="button" onClick={simulate} disabled={sim.busy} data-testid="simulate">{text.simulate}</button>
      </div>
      <Simulation state={sim} />
      <div className="cv-graph" data-testid="jdm-editor">
        <JdmConfigProvider>
          <DecisionGraph value={graph} onChange={onChange} onReactFlowInit={(rf) => setTimeout(() => rf.fitView(), 50)} />
        </JdmConfigProvider>
      </div>
    </>
  );
}

field.value = JSON.stringify(start);
createRoot(document.getElementById("jdm-root")).render(<StrictMode><Editor /></StrictMode>);
document.documentElement.dataset.editorReady = "1";
