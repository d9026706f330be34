"""Self-tuning: search a policy's thresholds against recorded outcomes and PROPOSE a new version.

The search never activates anything: it writes a proposed version with its expected effect (approval
rate and bad rate before/after on the outcomes file), and a second person with the approver role must
activate it. The tuned parameter is a single factor ``k`` that scales every numeric threshold of the
decision-table cells on one input field (``score`` by default): ``k < 1`` tightens the risk appetite
uniformly, ``k > 1`` loosens it, and the rule order and structure stay exactly as the risk officer wrote
them, so the proposal is a reviewable diff of numbers.

Outcomes CSV: one row per past application, with the policy's input fields as columns (numbers; strings
for string fields) and ``bad`` (1 = defaulted or fraud, 0 = good).
"""

from __future__ import annotations

import copy
import csv
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from callvet.core.db import Database
from callvet.core.errors import InvalidInput
from callvet.decision import store
from callvet.decision.engine import load_policy

__all__ = [
    "Target", "evaluate_effect", "parse_target", "propose_tuned", "read_outcomes", "scale_thresholds",
    "search",
]

_NUM = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)")
Target = tuple[str, float]


def parse_target(text: str) -> Target:
    m = re.fullmatch(r"\s*(bad_rate|approval_rate)\s*=\s*([0-9.]+)\s*", text)
    if not m or not 0 <= float(m.group(2)) <= 1:
        raise InvalidInput("target must be bad_rate=F or approval_rate=F with F in [0, 1]",
                           code="invalid_target")
    return m.group(1), float(m.group(2))


def read_outcomes(path: Path) -> dict[str, np.ndarray]:
    try:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise InvalidInput(f"cannot read outcomes file {path}: {exc}", code="invalid_outcomes") from None
    if not rows or "bad" not in rows[0]:
        raise InvalidInput("the outcomes file needs a header with a 'bad' column and at least one row",
                           code="invalid_outcomes")
    cols: dict[str, np.ndarray] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        try:
            cols[key] = np.asarray([float(v) for v in values])
        except ValueError:
            if key == "bad":
                raise InvalidInput("column 'bad' must be 0 or 1", code="invalid_outcomes") from None
            cols[key] = np.asarray(values, dtype=object)
    if not np.isin(cols["bad"], (0.0, 1.0)).all():
        raise InvalidInput("column 'bad' must be 0 or 1", code="invalid_outcomes")
    return cols


def scale_thresholds(graph: Mapping[str, Any], field: str, k: float) -> dict[str, Any]:
    """A copy of ``graph`` with every number in decision-table cells on ``field`` multiplied by ``k``."""
    out = copy.deepcopy(dict(graph))
    touched = 0
    for node in out.get("nodes", []):
        if node.get("type") != "decisionTableNode":
            continue
        content = node.get("content") or {}
        ids = [c["id"] for c in content.get("inputs", []) if c.get("field") == field]
        for row in content.get("rules", []):
            for cid in ids:
                cell = row.get(cid) or ""
                if _NUM.search(cell):
                    row[cid] = _NUM.sub(lambda m: f"{round(float(m.group(1)) * k, 4):g}", cell)
                    touched += 1
    if not touched:
        raise InvalidInput(f"no decision-table thresholds on field {field!r} to tune", code="nothing_to_tune")
    return out


def evaluate_effect(graph: Mapping[str, Any], outcomes: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Approval rate and bad rate among approvals of ``graph`` on the outcomes."""
    policy = load_policy("tuning", 0, dict(graph))
    n = len(outcomes["bad"])
    cols = {k: v for k, v in outcomes.items() if k != "bad"}
    try:
        res = policy.evaluate(cols, n)
    except Exception as exc:
        raise InvalidInput(f"the policy cannot be evaluated on the outcomes file: {exc}",
                           code="invalid_outcomes") from None
    if "outcome" not in res:
        raise InvalidInput("only policies that output 'outcome' can be tuned on approval/bad rates",
                           code="nothing_to_tune")
    approved = np.asarray(res["outcome"], dtype=object) == "approve"
    bad = outcomes["bad"] > 0.5
    return {"approval_rate": round(float(approved.mean()), 4),
            "bad_rate": round(float(bad[approved].mean()) if approved.any() else 0.0, 4),
            "n": n}


def search(graph: Mapping[str, Any], outcomes: Mapping[str, np.ndarray], target: Target, *,
           field: str = "score") -> tuple[float, dict[str, Any], dict[str, float]]:
    """Best factor k on a grid: for bad_rate, the most approvals with bad rate <= target (else the
    lowest bad rate); for approval_rate, the closest approval rate (ties: lower bad rate)."""
    metric, goal = target
    best: tuple[tuple[float, ...], float, dict[str, Any], dict[str, float]] | None = None
    for k in np.round(np.arange(0.3, 2.51, 0.02), 2):
        cand = scale_thresholds(graph, field, float(k))
        eff = evaluate_effect(cand, outcomes)
        if metric == "bad_rate":
            feasible = eff["bad_rate"] <= goal
            key = (1.0, eff["approval_rate"], -eff["bad_rate"]) if feasible else (0.0, -eff["bad_rate"], 0.0)
        else:
            key = (-abs(eff["approval_rate"] - goal), -eff["bad_rate"], 0.0)
        if best is None or key > best[0]:
            best = (key, float(k), cand, eff)
    assert best is not None
    return best[1], best[2], best[3]


def propose_tuned(db: Database, name: str, outcomes_path: Path, target: Target, *, actor: str,
                  field: str = "score") -> dict[str, Any]:
    """Tune the active version of ``name`` and store the result as a proposed version (not active)."""
    store.seed(db)
    active = store.active_versions(db)
    if name not in active:
        raise InvalidInput(f"policy {name!r} has no active version", code="policy_not_found")
    version, graph = active[name]
    outcomes = read_outcomes(outcomes_path)
    before = evaluate_effect(graph, outcomes)
    k, tuned, after = search(graph, outcomes, target, field=field)
    effect = {"target": f"{target[0]}={target[1]}", "field": field, "factor": k, "base_version": version,
              "outcomes_file": str(outcomes_path), "before": before, "after": after}
    note = (f"tuned from v{version}: thresholds on {field} x{k:g}; approval {before['approval_rate']:.3f}"
            f" -> {after['approval_rate']:.3f}, bad rate {before['bad_rate']:.4f} -> {after['bad_rate']:.4f}")
    return store.propose(db, name, tuned, actor=actor, note=note, expected_effect=effect)
