"""Tag definitions as data, compiled to SQL and run on DuckDB (in-process, over Parquet) or Spark.

A definition (``definitions/*.json``; versions in the database, :mod:`callvet.portrait.store`) has a
``facts_sql`` query returning ``customer_id`` plus named facts, and one of three kinds of classifier:

- ``sql``: first-hit ``rules`` (``{"tag", "when"}``, a SQL condition over the facts with ``{threshold}``
  placeholders filled from ``thresholds``) and a ``default`` (or ``default_expr``, a fact column);
- ``jdm``: a GoRules JDM graph whose first-hit decision table maps facts to ``tag``. zen-engine is the
  reference (validation, per-customer explanation); for bulk runs the table is compiled to the same SQL
  CASE, tested equal to zen;
- ``model``: a propensity model's score (``score``) cut into bands by the same first-hit rules.

The SQL is the portable subset DuckDB and Spark SQL share (CASE, COALESCE, LN, CAST, window functions;
days are integers, ``{as_of_day}`` and ``{cutoff_day}`` are substituted), so one definition runs on both.
The output keeps the facts and the index of the rule that fired, which is what an explanation shows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from callvet.core.errors import InvalidInput, Unavailable
from callvet.portrait.generate import TABLES

__all__ = [
    "DIMENSIONS",
    "TagDefinition",
    "compile_jdm_table",
    "connect",
    "explain",
    "render",
    "run_definition",
    "shipped_definition",
    "validate_definition",
]

DIMENSIONS = ("risk_level", "value", "response", "stickiness", "preference", "card_binding", "lifecycle")
MODEL_DIMENSIONS = ("response", "card_binding")
MAX_SQL = 20_000
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
TagDefinition = dict[str, Any]


def shipped_definition(dimension: str) -> TagDefinition:
    text = resources.files("callvet.portrait").joinpath("definitions", f"{dimension}.json").read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def _bad(msg: str) -> InvalidInput:
    return InvalidInput(msg, code="invalid_definition")


def _fill(text: str, values: Mapping[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise _bad(f"placeholder {{{m.group(1)}}} has no threshold or parameter")
        return repr(float(values[m.group(1)]))

    return _PLACEHOLDER.sub(sub, text)


def _sql_literal(cell: str) -> str:
    cell = cell.strip()
    if cell in ("true", "false"):
        return cell.upper()
    if re.fullmatch(r"-?\d+(\.\d+)?", cell):
        return cell
    if re.fullmatch(r'"[^"\'\\]*"', cell):
        return "'" + cell[1:-1] + "'"
    raise _bad(f"decision-table value {cell!r} is outside the subset compiled to SQL")


def _cell_sql(col: str, cell: str) -> str:
    """One unary JDM cell as a SQL predicate: empty, comparisons, ranges, literals, comma lists."""
    cell = (cell or "").strip()
    if cell in ("", "-"):
        return "TRUE"
    parts = [p.strip() for p in cell.split(",")]
    out = []
    for p in parts:
        m = re.fullmatch(r"(<=|>=|<|>|==|!=)\s*(.+)", p)
        r = re.fullmatch(r"([\[\(])\s*(-?[\d.]+)\s*\.\.\s*(-?[\d.]+)\s*([\]\)])", p)
        if m:
            op = {"==": "=", "!=": "<>"}.get(m.group(1), m.group(1))
            out.append(f"{col} {op} {_sql_literal(m.group(2))}")
        elif r:
            lo = ">=" if r.group(1) == "[" else ">"
            hi = "<=" if r.group(4) == "]" else "<"
            out.append(f"({col} {lo} {r.group(2)} AND {col} {hi} {r.group(3)})")
        else:
            out.append(f"{col} = {_sql_literal(p)}")
    return "(" + " OR ".join(out) + ")"


def compile_jdm_table(graph: Mapping[str, Any]) -> list[dict[str, str]]:
    """The graph's single first-hit decision table as rules ``{"tag", "when", "description"}``."""
    tables = [n for n in graph.get("nodes", []) if n.get("type") == "decisionTableNode"]
    kinds = {n.get("type") for n in graph.get("nodes", [])}
    if len(tables) != 1 or kinds - {"inputNode", "outputNode", "decisionTableNode"}:
        raise _bad("a jdm tag graph must be input -> one decision table -> output")
    content = tables[0].get("content") or {}
    if content.get("hitPolicy") != "first":
        raise _bad("the decision table must use the first hit policy")
    inputs = content.get("inputs", [])
    outs = [o for o in content.get("outputs", []) if o.get("field") == "tag"]
    if not outs:
        raise _bad("the decision table must output the field 'tag'")
    rules = []
    for row in content.get("rules", []):
        conds = []
        for col in inputs:
            field = col.get("field", "")
            if not _IDENT.match(field):
                raise _bad(f"decision-table input {field!r} is not a fact name")
            c = _cell_sql(field, row.get(col["id"], ""))
            if c != "TRUE":
                conds.append(c)
        tag = (row.get(outs[0]["id"]) or "").strip()
        if not re.fullmatch(r'"[a-z_]+"', tag):
            raise _bad(f"a tag output must be a quoted category, got {tag!r}")
        rules.append(
            {
                "tag": tag[1:-1],
                "when": " AND ".join(conds) or "TRUE",
                "description": row.get("_description", ""),
            }
        )
    if not rules or rules[-1]["when"] != "TRUE":
        raise _bad("the decision table's last row must catch everything (all cells empty)")
    return rules


def _rules(defn: TagDefinition) -> tuple[list[dict[str, str]], str]:
    """First-hit rules with thresholds filled in, and the SQL of the default tag."""
    if defn["kind"] == "jdm":
        rules = compile_jdm_table(defn["graph"])
        return rules[:-1], "'" + rules[-1]["tag"] + "'"
    rules = [
        {
            "tag": r["tag"],
            "when": _fill(r["when"], defn.get("thresholds", {})),
            "description": r.get("description", ""),
        }
        for r in defn.get("rules", [])
    ]
    if "default_expr" in defn:
        return rules, defn["default_expr"]
    return rules, "'" + defn["default"] + "'"


def validate_definition(defn: Any, dimension: str | None = None) -> TagDefinition:
    """Check shape, names, the SQL statement kind and (for jdm) that zen-engine loads the graph."""
    if not isinstance(defn, dict):
        raise _bad("a tag definition must be a JSON object")
    dim = defn.get("dimension")
    if dim not in DIMENSIONS or (dimension is not None and dim != dimension):
        raise _bad(f"dimension must be {dimension or 'one of ' + ', '.join(DIMENSIONS)}")
    kind = defn.get("kind")
    if kind not in ("sql", "jdm", "model"):
        raise _bad("kind must be sql, jdm or model")
    if (kind == "model") != (dim in MODEL_DIMENSIONS):
        raise _bad(f"{dim} must be {'a model' if dim in MODEL_DIMENSIONS else 'a rule (sql or jdm)'} tag")
    cats = defn.get("categories")
    if (
        not isinstance(cats, list)
        or not cats
        or not all(isinstance(c, str) and _IDENT.match(c) for c in cats)
    ):
        raise _bad("categories must be a non-empty list of lower-case names")
    sql = defn.get("facts_sql")
    if not isinstance(sql, str) or not 0 < len(sql) <= MAX_SQL:
        raise _bad(f"facts_sql must be SQL text of at most {MAX_SQL} characters")
    try:
        stmts = duckdb.extract_statements(_fill(sql, {"as_of_day": 360, "cutoff_day": 360}))
    except duckdb.Error as exc:
        raise _bad(f"facts_sql does not parse: {str(exc).splitlines()[0][:300]}") from None
    if len(stmts) != 1 or stmts[0].type != duckdb.StatementType.SELECT:
        raise _bad("facts_sql must be exactly one SELECT statement")
    th = defn.get("thresholds", {})
    if not isinstance(th, dict) or not all(
        _IDENT.match(k) and isinstance(v, int | float) and not isinstance(v, bool) and abs(v) < 1e12
        for k, v in th.items()
    ):
        raise _bad("thresholds must map names to numbers")
    if kind == "jdm":
        import zen

        try:
            zen.ZenEngine().create_decision(json.dumps(defn.get("graph"))).validate()
        except Exception as exc:
            raise _bad(f"zen-engine rejected the graph: {str(exc).splitlines()[0][:300]}") from None
    else:
        rules = defn.get("rules")
        if not isinstance(rules, list) or not all(
            isinstance(r, dict) and isinstance(r.get("when"), str) and len(r["when"]) <= 2000 for r in rules
        ):
            raise _bad("rules must be a list of {tag, when}")
        if "default" not in defn and "default_expr" not in defn:
            raise _bad("a definition needs a default tag")
    if kind == "model" and defn.get("model") not in MODEL_DIMENSIONS:
        raise _bad("a model tag names its model: response or card_binding")
    rules_, default = _rules(defn)
    for r in rules_:
        if r["tag"] not in cats:
            raise _bad(f"rule tag {r['tag']!r} is not among the categories")
        for banned in (";", "--", "/*"):
            if banned in r["when"]:
                raise _bad("a rule condition is one SQL expression")
    if default.startswith("'") and default.strip("'") not in cats:
        raise _bad(f"default tag {default} is not among the categories")
    return defn


def render(defn: TagDefinition, *, as_of_day: int, score_table: str | None = None) -> str:
    """The definition as one SELECT: customer_id, facts, ``tag`` and ``rule`` (index of the rule that
    fired; the number of rules for the default)."""
    rules, default = _rules(defn)
    facts = _fill(defn["facts_sql"], {"as_of_day": as_of_day, "cutoff_day": as_of_day})
    src = f"({facts}) f"
    if defn["kind"] == "model":
        if score_table is None:
            raise Unavailable("a model tag needs its scores", code="model_not_built")
        src = f"({facts}) f0 JOIN {score_table} s ON s.customer_id = f0.customer_id"
        facts_cols = "f0.*, s.score"
        src = f"(SELECT {facts_cols} FROM {src}) f"
    tag = "CASE " + " ".join(f"WHEN {r['when']} THEN '{r['tag']}'" for r in rules) + f" ELSE {default} END"
    idx = (
        "CASE "
        + " ".join(f"WHEN {r['when']} THEN {i}" for i, r in enumerate(rules))
        + f" ELSE {len(rules)} END"
    )
    if not rules:
        tag, idx = default, "0"
    return f"SELECT f.*, {tag} AS tag, {idx} AS rule FROM {src}"


def connect(
    bank: Path, *, threads: int | None = None, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per bank table over its Parquet file, then locked to that
    directory: definitions are SQL written by people, so they may read the bank's tables and nothing else
    (no other files, no COPY out, no extensions)."""
    bank = Path(bank).resolve()
    missing = [t for t in TABLES if not (bank / f"{t}.parquet").is_file()]
    if missing:
        raise Unavailable(f"no bank at {bank}: missing {', '.join(missing)}.parquet", code="bank_not_built")
    con = duckdb.connect(
        config={"threads": threads or 2, **({"memory_limit": memory_limit} if memory_limit else {})}
    )
    for t in TABLES:
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{bank / t}.parquet')")
    con.execute(f"SET allowed_directories = ['{bank}/']")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def run_definition(
    con: duckdb.DuckDBPyConnection, defn: TagDefinition, *, as_of_day: int, scores: pa.Table | None = None
) -> pa.Table:
    """Run one definition on DuckDB; returns customer_id, facts, tag and rule as an Arrow table."""
    name = None
    if scores is not None:
        name = f"scores_{defn['dimension']}"
        con.register(name, scores)
    try:
        return con.sql(render(defn, as_of_day=as_of_day, score_table=name)).to_arrow_table()
    except duckdb.Error as exc:
        raise InvalidInput(
            f"{defn['dimension']}: the definition fails on this bank: {str(exc).splitlines()[0][:300]}",
            code="invalid_definition",
        ) from None
    finally:
        if name:
            con.unregister(name)


def explain(defn: TagDefinition, version: int, row: Mapping[str, Any]) -> dict[str, Any]:
    """Why a customer has a tag: the facts, the thresholds, and the rule that fired (for jdm, zen-engine
    re-evaluates the facts and its answer is reported beside the stored one)."""
    rules, _default = _rules(defn)
    facts = {k: _plain(row[k]) for k in row if k not in ("customer_id", "tag", "rule")}
    i = int(row["rule"])
    fired = (
        rules[i]
        if i < len(rules)
        else {"tag": row["tag"], "when": "otherwise (no earlier rule matched)", "description": "default"}
    )
    out: dict[str, Any] = {
        "tag": row["tag"],
        "version": version,
        "kind": defn["kind"],
        "facts": facts,
        "fact_meanings": defn.get("facts", {}),
        "thresholds": defn.get("thresholds", {}),
        "rule": {
            "index": i,
            "when": fired["when"],
            "description": fired.get("description", ""),
            "tag": fired["tag"],
        },
        "rules_checked_before": [r["when"] for r in rules[:i]],
    }
    if defn["kind"] == "jdm":
        import zen

        res = zen.ZenEngine().create_decision(json.dumps(defn["graph"])).evaluate(facts)
        out["zen_tag"] = res["result"].get("tag")
    if defn["kind"] == "model":
        out["model"] = defn["model"]
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, Decimal):
        v = float(v)
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float):
        return round(v, 6)
    return v
