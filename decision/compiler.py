"""Compile a JDM decision graph into vectorised numpy evaluation, for batches.

zen-engine stays the reference and the authoring format; it costs ~20-100 µs per evaluation, which caps a
single core far below the 50,000 decisions/s the bank needs for batch scoring. This compiler accepts the
subset of JDM the shipped policies use -- a linear chain of expression nodes and first-hit decision tables
whose last row catches everything -- and evaluates each node once over whole columns. A graph outside the
subset raises :class:`Unsupported` and the caller falls back to zen per row; the tests compare both on
many random inputs.

Expression subset: numbers, strings, ``true``/``false``, field names, ``+ - * /``, comparisons, ``and``/
``or``/``not``, and ``min([..])``, ``max([..])``, ``floor()``, ``ceil()``, ``abs()``. Unary cells: empty
(any), ``< <= > >= == !=`` a literal, ranges ``[a..b]`` / ``(a..b)`` with either bracket, a literal, or a
comma-separated list of these (any of).
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from callvet.core.errors import CallvetError

__all__ = ["Columns", "CompiledGraph", "Unsupported", "compile_graph"]

Columns = dict[str, np.ndarray]
_Fn = Callable[[Mapping[str, np.ndarray], int], Any]


class Unsupported(CallvetError, ValueError):
    """The graph uses JDM features outside the vectorised subset; evaluate it with zen instead."""

    code = "unsupported_graph"


_NAMES = {"true": True, "false": False}


@dataclass(frozen=True)
class _Ops:
    """Arithmetic for one evaluation mode: numpy ufuncs over columns, or plain Python over one row."""

    binops: dict[type, Callable[[Any, Any], Any]]
    cmpops: dict[str, Callable[[Any, Any], Any]]
    funcs: dict[str, Callable[..., Any]]
    neg: Callable[[Any], Any]
    not_: Callable[[Any], Any]
    and_: Callable[[Any, Any], Any]
    or_: Callable[[Any, Any], Any]
    minimum: Callable[[Any, Any], Any]
    maximum: Callable[[Any, Any], Any]


_VEC = _Ops(
    binops={ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide},
    cmpops={"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal, "==": np.equal,
            "!=": np.not_equal},
    funcs={"floor": np.floor, "ceil": np.ceil, "abs": np.abs},
    neg=np.negative, not_=np.logical_not, and_=np.logical_and, or_=np.logical_or, minimum=np.minimum,
    maximum=np.maximum,
)
_ROW = _Ops(
    binops={ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv},
    cmpops={"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
            "!=": operator.ne},
    funcs={"floor": math.floor, "ceil": math.ceil, "abs": abs},
    neg=operator.neg, not_=operator.not_, and_=lambda a, b: bool(a) and bool(b),
    or_=lambda a, b: bool(a) or bool(b), minimum=min, maximum=max,
)
_AST_CMP = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


def _compile_expr(source: str, ops: _Ops = _VEC) -> _Fn:
    """Compile a zen expression into a function of (columns, n) -> scalar or array."""
    if "?" in source or "$" in source:
        raise Unsupported(f"expression {source!r} uses syntax outside the vectorised subset")
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as exc:
        raise Unsupported(f"cannot parse expression {source!r}") from exc
    return _node(tree, source, ops)


def _node(node: ast.AST, source: str, ops: _Ops) -> _Fn:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str) \
            and not isinstance(node.value, bool):
        value = float(node.value) if isinstance(node.value, int | float) else node.value
        return lambda cols, n: value
    if isinstance(node, ast.Name):
        name = node.id
        if name in _NAMES:
            const = _NAMES[name]
            return lambda cols, n: const

        def column(cols: Mapping[str, np.ndarray], n: int) -> Any:
            try:
                return cols[name]
            except KeyError:
                raise Unsupported(f"field {name!r} is not in the context") from None

        return column
    if isinstance(node, ast.BinOp) and type(node.op) in ops.binops:
        op = ops.binops[type(node.op)]
        left, right = _node(node.left, source, ops), _node(node.right, source, ops)
        return lambda cols, n: op(left(cols, n), right(cols, n))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        neg, inner = ops.neg, _node(node.operand, source, ops)
        return lambda cols, n: neg(inner(cols, n))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        not_, inner = ops.not_, _node(node.operand, source, ops)
        return lambda cols, n: not_(inner(cols, n))
    if isinstance(node, ast.BoolOp):
        parts = [_node(v, source, ops) for v in node.values]
        combine = ops.and_ if isinstance(node.op, ast.And) else ops.or_

        def boolop(cols: Mapping[str, np.ndarray], n: int) -> Any:
            acc = parts[0](cols, n)
            for p in parts[1:]:
                acc = combine(acc, p(cols, n))
            return acc

        return boolop
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _AST_CMP:
        cmp, left, right = ops.cmpops[_AST_CMP[type(node.ops[0])]], _node(node.left, source, ops), \
            _node(node.comparators[0], source, ops)
        return lambda cols, n: cmp(left(cols, n), right(cols, n))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        fname = node.func.id
        if fname in ("min", "max") and len(node.args) == 1 and isinstance(node.args[0], ast.List):
            items = [_node(e, source, ops) for e in node.args[0].elts]
            if not items:
                raise Unsupported(f"empty list in {source!r}")
            reduce = ops.minimum if fname == "min" else ops.maximum

            def minmax(cols: Mapping[str, np.ndarray], n: int) -> Any:
                acc = items[0](cols, n)
                for it in items[1:]:
                    acc = reduce(acc, it(cols, n))
                return acc

            return minmax
        if fname in ops.funcs and len(node.args) == 1:
            fn, arg = ops.funcs[fname], _node(node.args[0], source, ops)
            return lambda cols, n: fn(arg(cols, n))
    raise Unsupported(f"{ast.dump(node)[:60]} in {source!r} is outside the vectorised subset")


_RANGE = re.compile(r"^([\[\(\]])\s*(.+?)\s*\.\.\s*(.+?)\s*([\]\)\[])$")
_CMP = re.compile(r"^(<=|>=|==|!=|<|>)\s*(.+)$")


def _split_top(cell: str) -> list[str]:
    """Split a unary cell on commas that are outside quotes and brackets."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in cell:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def _compile_unary(cell: str, ops: _Ops = _VEC) -> _Fn | None:
    """A unary test against the column value; None means "any" (an empty cell)."""
    cell = (cell or "").strip()
    if cell in ("", "-"):
        return None
    tests: list[Callable[[Any, Mapping[str, np.ndarray], int], Any]] = []
    for item in _split_top(cell):
        m = _RANGE.match(item)
        if m:
            lo_b, lo_s, hi_s, hi_b = m.groups()
            lo, hi = _compile_expr(lo_s, ops), _compile_expr(hi_s, ops)
            lo_op = ops.cmpops[">=" if lo_b == "[" else ">"]
            hi_op = ops.cmpops["<=" if hi_b == "]" else "<"]

            def in_range(v: Any, cols: Mapping[str, np.ndarray], n: int, lo: _Fn = lo, hi: _Fn = hi,
                         lo_op: Any = lo_op, hi_op: Any = hi_op) -> Any:
                return lo_op(v, lo(cols, n)) & hi_op(v, hi(cols, n))

            tests.append(in_range)
            continue
        m = _CMP.match(item)
        if m:
            op = ops.cmpops[m.group(1)]
            rhs = _compile_expr(m.group(2), ops)
            tests.append(lambda v, cols, n, op=op, rhs=rhs: op(v, rhs(cols, n)))
            continue
        lit, eq = _compile_expr(item, ops), ops.cmpops["=="]
        tests.append(lambda v, cols, n, lit=lit, eq=eq: eq(v, lit(cols, n)))

    def unary_any(v: Any, cols: Mapping[str, np.ndarray], n: int) -> Any:
        acc = tests[0](v, cols, n)
        for t in tests[1:]:
            acc = acc | t(v, cols, n)
        return acc

    return unary_any  # type: ignore[return-value]


def _broadcast(value: Any, n: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return np.full(n, value, dtype=object if isinstance(value, str) else None)
    return arr


_Rules = list[tuple[list[tuple[str, Any]], list[tuple[str, _Fn]]]]


@dataclass
class _Table:
    pass_through: bool
    fields: list[str]
    rules: _Rules
    row_rules: _Rules

    def run_row(self, ctx: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for conds, outputs in self.row_rules:
            if all(test(ctx[f], ctx, 1) for f, test in conds):
                out = {f: fn(ctx, 1) for f, fn in outputs}
                break
        return {**ctx, **out} if self.pass_through else out

    def run(self, cols: Columns, n: int) -> Columns:
        out: Columns = {}
        open_rows = np.ones(n, dtype=bool)
        for conds, outputs in self.rules:
            hit = open_rows.copy()
            for field_name, test in conds:
                hit &= np.asarray(test(cols[field_name], cols, n), dtype=bool)
                if not hit.any():
                    break
            if not hit.any():
                continue
            for field_name, fn in outputs:
                values = fn(cols, n)
                scalar = np.ndim(values) == 0
                is_text = isinstance(values, str) if scalar else np.asarray(values).dtype == object
                col = out.get(field_name)
                if col is None:
                    col = out[field_name] = np.empty(n, dtype=object) if is_text else np.full(n, np.nan)
                elif is_text and col.dtype != object:
                    col = out[field_name] = col.astype(object)
                col[hit] = values if scalar else np.asarray(values)[hit]
            open_rows &= ~hit
            if not open_rows.any():
                break
        return {**cols, **out} if self.pass_through else out


@dataclass
class _Expressions:
    pass_through: bool
    items: list[tuple[str, _Fn]]
    row_items: list[tuple[str, _Fn]]

    def run_row(self, ctx: dict[str, Any]) -> dict[str, Any]:
        out = {key: fn(ctx, 1) for key, fn in self.row_items}
        return {**ctx, **out} if self.pass_through else out

    def run(self, cols: Columns, n: int) -> Columns:
        out = {key: _broadcast(fn(cols, n), n) for key, fn in self.items}
        return {**cols, **out} if self.pass_through else out


@dataclass
class _Switch:
    """First-hit switch: rows go to the first branch whose condition holds (the last is the default)."""

    branches: list[tuple[_Fn | None, _Fn | None, CompiledGraph]]

    def run(self, cols: Columns, n: int) -> Columns:
        open_rows = np.ones(n, dtype=bool)
        parts: list[tuple[np.ndarray, Columns]] = []
        for cond, _row_cond, program in self.branches:
            hit = open_rows.copy() if cond is None else open_rows & np.asarray(cond(cols, n), dtype=bool)
            open_rows &= ~hit
            if hit.any():
                idx = np.flatnonzero(hit)
                parts.append((idx, program.evaluate({k: v[idx] for k, v in cols.items()})))
        out: Columns = {}
        for idx, res in parts:
            for key, values in res.items():
                col = out.get(key)
                text = values.dtype == object or values.dtype.kind in "UO"
                if col is None:
                    col = out[key] = np.empty(n, dtype=object) if text else np.full(n, np.nan)
                elif text and col.dtype != object:
                    col = out[key] = col.astype(object)
                col[idx] = values
        return out

    def run_row(self, ctx: dict[str, Any]) -> dict[str, Any]:
        for _cond, row_cond, program in self.branches:
            if row_cond is None or row_cond(ctx, 1):
                return program.evaluate_row(ctx)
        return {}


@dataclass
class CompiledGraph:
    """A graph compiled to column operations; ``evaluate`` maps input columns to output columns."""

    steps: list[_Table | _Expressions | _Switch]

    def evaluate(self, columns: Mapping[str, Any]) -> Columns:
        cols: Columns = {k: np.asarray(v) for k, v in columns.items()}
        n = len(next(iter(cols.values()))) if cols else 0
        for step in self.steps:
            cols = step.run(cols, n)
        return cols

    def evaluate_row(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """One row with plain Python arithmetic: cheaper than numpy for single decisions."""
        ctx = dict(context)
        for step in self.steps:
            ctx = step.run_row(ctx)
        return ctx


class _Graph:
    """Nodes and edges of a JDM graph, with the shape checks of the vectorised subset."""

    def __init__(self, graph: Mapping[str, Any]) -> None:
        self.nodes = {n["id"]: n for n in graph.get("nodes", [])}
        self.nexts: dict[str, list[tuple[str, str | None]]] = {}
        self.indeg: dict[str, int] = dict.fromkeys(self.nodes, 0)
        for e in graph.get("edges", []):
            if e.get("sourceId") not in self.nodes or e.get("targetId") not in self.nodes:
                raise Unsupported("an edge points at a node that does not exist")
            self.nexts.setdefault(e["sourceId"], []).append((e["targetId"], e.get("sourceHandle")))
            self.indeg[e["targetId"]] += 1
        self.visited: set[str] = set()

    def start(self) -> dict[str, Any]:
        starts = [n for n in self.nodes.values() if n["type"] == "inputNode"]
        if len(starts) != 1:
            raise Unsupported("the graph needs exactly one input node")
        self.visited.add(starts[0]["id"])
        return starts[0]

    def follow(self, node: dict[str, Any]) -> dict[str, Any]:
        """The single plain successor of a non-switch node."""
        succ = self.nexts.get(node["id"], [])
        if len(succ) != 1 or succ[0][1]:
            raise Unsupported(f"node {node['id']!r} must have exactly one plain successor")
        nxt = self.nodes[succ[0][0]]
        if nxt["type"] != "outputNode" and self.indeg[nxt["id"]] > 1:
            raise Unsupported("branches may only join at the output node")
        self.visited.add(nxt["id"])
        return nxt


def _no_path(content: Mapping[str, Any]) -> None:
    if content.get("inputField") or content.get("outputPath") or \
            content.get("executionMode", "single") != "single":
        raise Unsupported("inputField/outputPath/loop execution are outside the vectorised subset")


def compile_graph(graph: Mapping[str, Any]) -> CompiledGraph:
    g = _Graph(graph)
    program = _compile_from(g, g.follow(g.start()))
    if g.visited != set(g.nodes):
        raise Unsupported("every node must be reachable from the input node")
    return program


def _compile_from(g: _Graph, node: dict[str, Any]) -> CompiledGraph:
    """Steps from ``node`` to the output node; a switch ends the chain with one sub-program per branch."""
    steps: list[_Table | _Expressions | _Switch] = []
    while node["type"] != "outputNode":
        content = node.get("content") or {}
        kind = node["type"]
        if kind == "switchNode":
            steps.append(_compile_switch(g, node))
            return CompiledGraph(steps)
        if kind == "expressionNode":
            _no_path(content)
            exprs = content.get("expressions", [])
            items = [(e["key"], _compile_expr(e["value"])) for e in exprs]
            if any("." in k for k, _ in items):
                raise Unsupported("nested expression keys are outside the vectorised subset")
            row_items = [(e["key"], _compile_expr(e["value"], _ROW)) for e in exprs]
            steps.append(_Expressions(bool(content.get("passThrough")), items, row_items))
        elif kind == "decisionTableNode":
            _no_path(content)
            if content.get("hitPolicy", "first") != "first":
                raise Unsupported("only the first-hit policy is vectorised")
            inputs, outputs = content.get("inputs", []), content.get("outputs", [])
            if any("." in (c.get("field") or "") or not c.get("field") for c in [*inputs, *outputs]):
                raise Unsupported("table columns need plain, non-nested field names")
            rules, row_rules = [], []
            for row in content.get("rules", []):
                for ops, target in ((_VEC, rules), (_ROW, row_rules)):
                    conds = []
                    for col in inputs:
                        test = _compile_unary(row.get(col["id"], ""), ops)
                        if test is not None:
                            conds.append((col["field"], test))
                    outs = [(col["field"], _compile_expr(row[col["id"]], ops)) for col in outputs
                            if (row.get(col["id"]) or "").strip() not in ("", "null")]
                    if len(outs) != len(outputs):
                        raise Unsupported("empty or null output cells are outside the vectorised subset")
                    target.append((conds, outs))
            if not rules or rules[-1][0]:
                raise Unsupported("the table's last rule must match everything (a catch-all row)")
            steps.append(_Table(bool(content.get("passThrough")), [c["field"] for c in outputs], rules,
                                row_rules))
        else:
            raise Unsupported(f"node type {kind!r} is outside the vectorised subset")
        node = g.follow(node)
    return CompiledGraph(steps)


def _compile_switch(g: _Graph, node: dict[str, Any]) -> _Switch:
    content = node.get("content") or {}
    if content.get("hitPolicy", "first") != "first":
        raise Unsupported("only first-hit switches are vectorised")
    statements = content.get("statements") or []
    if not statements or (statements[-1].get("condition") or "").strip():
        raise Unsupported("the switch's last statement must be the default (an empty condition)")
    succ = g.nexts.get(node["id"], [])
    branches = []
    for st in statements:
        targets = [t for t, handle in succ if handle == st["id"]]
        if len(targets) != 1:
            raise Unsupported(f"switch statement {st['id']!r} needs exactly one outgoing edge")
        target = g.nodes[targets[0]]
        if g.indeg[target["id"]] > 1 and target["type"] != "outputNode":
            raise Unsupported("switch branches may only join at the output node")
        g.visited.add(target["id"])
        cond = (st.get("condition") or "").strip()
        branches.append((
            _compile_expr(cond) if cond else None, _compile_expr(cond, _ROW) if cond else None,
            _compile_from(g, target),
        ))
    if len(succ) != len(statements):
        raise Unsupported("every switch edge must belong to one statement")
    return _Switch(branches)
