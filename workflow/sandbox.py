"""A restricted expression and script language for BPMN conditions and script tasks.

Uploaded process definitions come from people, not from the code base, so they must never reach Python's
``eval``/``exec``. Expressions are parsed with :mod:`ast`, checked against a whitelist of node types at
upload time (:func:`validate`), and run by a small tree-walking interpreter (:func:`evaluate`,
:func:`execute`) that only knows plain data: numbers, strings, booleans, None, lists, tuples and dicts.

What is impossible by construction: imports, attribute access of any kind (so no ``__class__`` walks),
names starting with ``_``, calls except a few pure functions, lambdas, comprehensions, loops,
f-strings and ``str.format``. Operands and results are bounded (integers to ``MAX_INT_BITS`` bits,
exponents to 64, ``round``'s ndigits to +-20, no complex numbers) and every evaluation has a step budget
(``MAX_STEPS``). Every value a step produces is size-checked (``9**9**9`` or
``'a' * 10**9`` fail fast with :class:`SandboxError` instead of eating the server), so each script
finishes in time linear in its own length.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from callvet.core.errors import InvalidInput

__all__ = ["SAFE_FUNCTIONS", "SandboxError", "evaluate", "execute", "validate"]

MAX_SOURCE = 20_000
MAX_INT_BITS = 256
MAX_SEQUENCE = 10_000
MAX_NODES = 2_000
MAX_NDIGITS = 20
MAX_STEPS = 100_000


class SandboxError(InvalidInput, ValueError):
    """A script or expression that is not allowed or failed safely."""

    code = "script_refused"


def _safe_round(x: Any, n: int = 0) -> Any:
    """``round`` with ``ndigits`` bounded: ``round(5, -10**9)`` would compute ``10**10**9``."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise SandboxError("round() takes a number")
    if isinstance(n, bool) or not isinstance(n, int) or abs(n) > MAX_NDIGITS:
        raise SandboxError(f"round() ndigits must be an integer within +-{MAX_NDIGITS}")
    return round(x, n)


SAFE_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "min": min,
    "max": max,
    "round": _safe_round,
    "len": len,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "sum": sum,
    "any": any,
    "all": all,
    "sorted": sorted,
    "floor": math.floor,
    "ceil": math.ceil,
}

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.Not: operator.not_,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_CMP: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}

_ALLOWED: tuple[type[ast.AST], ...] = (
    ast.Expression,
    ast.Module,
    ast.Expr,
    ast.Assign,
    ast.AugAssign,
    ast.If,
    ast.Pass,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.Store,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.Subscript,
    ast.Slice,
    ast.Dict,
    ast.List,
    ast.Tuple,
    ast.Call,
    ast.And,
    ast.Or,
    *_BINOPS,
    *_UNARY,
    *_CMP,
)


def _parse(source: str, mode: str) -> ast.AST:
    if not isinstance(source, str):
        raise SandboxError("script must be text")
    if len(source) > MAX_SOURCE:
        raise SandboxError(f"script longer than {MAX_SOURCE} characters")
    try:
        tree = ast.parse(source.strip() if mode == "eval" else source, mode=mode)
    except SyntaxError as exc:
        raise SandboxError(f"syntax error: {exc.msg} (line {exc.lineno})") from None
    except (RecursionError, MemoryError):
        raise SandboxError("script nested too deeply") from None
    for count, node in enumerate(ast.walk(tree), start=1):
        if count > MAX_NODES:
            raise SandboxError(f"script has more than {MAX_NODES} syntax nodes")
        if not isinstance(node, _ALLOWED):
            raise SandboxError(f"{type(node).__name__} is not allowed")
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            raise SandboxError(f"name {node.id!r} is not allowed (leading underscore)")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in SAFE_FUNCTIONS:
                what = node.func.id if isinstance(node.func, ast.Name) else type(node.func).__name__
                raise SandboxError(f"call of {what!r} is not allowed; allowed: {', '.join(SAFE_FUNCTIONS)}")
            if node.keywords:
                raise SandboxError("keyword arguments are not allowed")
            if any(isinstance(a, ast.Starred) for a in node.args):
                raise SandboxError("star arguments are not allowed")
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Mod)
            and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str)
        ):
            raise SandboxError("%-formatting of strings is not allowed")
        if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
            raise SandboxError("bytes literals are not allowed")
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if not _assignable(t):
                    raise SandboxError("only names and subscripts of names can be assigned")
    return tree


def _assignable(t: ast.AST) -> bool:
    if isinstance(t, ast.Name):
        return True
    if isinstance(t, ast.Subscript):
        return _assignable(t.value)
    return False


def validate(source: str, *, mode: str = "eval") -> None:
    """Raise :class:`SandboxError` if ``source`` is not allowed (``mode`` is ``eval`` or ``exec``)."""
    _parse(source, mode)


def _check_size(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise SandboxError(f"integer result larger than {MAX_INT_BITS} bits")
    if isinstance(value, float) and math.isinf(value):
        raise SandboxError("float overflow")
    if isinstance(value, complex):
        raise SandboxError("complex results are not allowed")
    if isinstance(value, str | list | tuple | dict) and len(value) > MAX_SEQUENCE:
        raise SandboxError(f"result longer than {MAX_SEQUENCE} items")
    return value


def _binop(op: ast.operator, left: Any, right: Any) -> Any:
    for operand in (left, right):
        if isinstance(operand, int) and not isinstance(operand, bool) and operand.bit_length() > MAX_INT_BITS:
            raise SandboxError(f"integer operand larger than {MAX_INT_BITS} bits")
    if isinstance(op, ast.Pow):
        if isinstance(right, int | float) and abs(right) > 64:
            raise SandboxError("exponent larger than 64 is not allowed")
        if isinstance(left, int | float) and abs(left) > 2**64:
            raise SandboxError("base too large for exponentiation")
    if isinstance(op, ast.Mult):
        for seq, n in ((left, right), (right, left)):
            if (
                isinstance(seq, str | list | tuple)
                and isinstance(n, int)
                and len(seq) * max(n, 0) > MAX_SEQUENCE
            ):
                raise SandboxError(f"sequence repetition longer than {MAX_SEQUENCE} items")
    if isinstance(op, ast.Mod) and isinstance(left, str):
        raise SandboxError("%-formatting of strings is not allowed")
    try:
        return _check_size(_BINOPS[type(op)](left, right))
    except SandboxError:
        raise
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise SandboxError(f"{type(exc).__name__}: {exc}") from None


def _check_argument(fname: str, v: Any) -> None:
    if fname in ("int", "str", "float", "bool") and not isinstance(v, int | float | str | bool | None):
        raise SandboxError(f"{fname}() takes only a number, text, boolean or None")
    if fname in ("int", "str", "float") and isinstance(v, str) and len(v) > 100:
        raise SandboxError(f"{fname}() argument too long")
    if fname == "sum" and not (isinstance(v, list | tuple) and all(isinstance(x, int | float) for x in v)):
        raise SandboxError("sum() takes a list of numbers")
    if fname in ("sorted", "sum", "min", "max", "any", "all") and not isinstance(
        v, list | tuple | dict | int | float | str | bool
    ):
        raise SandboxError(f"{fname}() of {type(v).__name__} is not allowed")


class _Interp:
    def __init__(self, names: MutableMapping[str, Any]) -> None:
        self.names = names
        self.steps = 0

    def ev(self, node: ast.AST) -> Any:
        """Value of one node; each node kind is allowed explicitly, anything else is refused."""
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise SandboxError(f"expression took more than {MAX_STEPS} steps")
        match node:
            case ast.Expression(body=body):
                return self.ev(body)
            case ast.Constant(value=v):
                return v
            case ast.Name(id=name):
                return self._name(name)
            case ast.BinOp(left=lhs, op=op, right=rhs):
                return _binop(op, self.ev(lhs), self.ev(rhs))
            case ast.UnaryOp(op=op, operand=x):
                try:
                    return _UNARY[type(op)](self.ev(x))
                except TypeError as exc:
                    raise SandboxError(str(exc)) from None
            case ast.BoolOp(op=op, values=values):
                return self._bool_op(op, values)
            case ast.Compare(left=lhs, ops=ops, comparators=comps):
                return self._compare(lhs, ops, comps)
            case ast.IfExp(test=t, body=b, orelse=o):
                return self.ev(b) if self.ev(t) else self.ev(o)
            case ast.Subscript(value=v, slice=s):
                return self._subscript(v, s)
            case ast.Dict(keys=keys, values=values):
                if any(k is None for k in keys):
                    raise SandboxError("dict unpacking is not allowed")
                return _check_size({self.ev(k): self.ev(v) for k, v in zip(keys, values, strict=True)})
            case ast.List(elts=elts):
                return [self.ev(e) for e in elts]
            case ast.Tuple(elts=elts):
                return tuple(self.ev(e) for e in elts)
            case ast.Call(func=ast.Name(id=fname), args=args):
                return self._call(fname, [self.ev(a) for a in args])
        raise SandboxError(f"{type(node).__name__} is not allowed")

    def _name(self, name: str) -> Any:
        if name in self.names:
            return self.names[name]
        if name in SAFE_FUNCTIONS:
            return SAFE_FUNCTIONS[name]
        if name in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[name]
        raise SandboxError(f"name {name!r} is not defined")

    def _bool_op(self, op: ast.boolop, values: list[ast.expr]) -> Any:
        result: Any = None
        for v in values:
            result = self.ev(v)
            if isinstance(op, ast.And) and not result:
                return result
            if isinstance(op, ast.Or) and result:
                return result
        return result

    def _compare(self, lhs: ast.expr, ops: list[ast.cmpop], comps: list[ast.expr]) -> bool:
        left = self.ev(lhs)
        for op, c in zip(ops, comps, strict=True):
            right = self.ev(c)
            try:
                ok = _CMP[type(op)](left, right)
            except TypeError as exc:
                raise SandboxError(str(exc)) from None
            if not ok:
                return False
            left = right
        return True

    def _subscript(self, v: ast.expr, s: ast.expr) -> Any:
        container = self.ev(v)
        key = (
            self.ev(s)
            if not isinstance(s, ast.Slice)
            else slice(
                self.ev(s.lower) if s.lower else None,
                self.ev(s.upper) if s.upper else None,
                self.ev(s.step) if s.step else None,
            )
        )
        if not isinstance(container, dict | list | tuple | str):
            raise SandboxError(f"cannot index a {type(container).__name__}")
        try:
            return container[key]
        except (KeyError, IndexError, TypeError) as exc:
            raise SandboxError(f"{type(exc).__name__}: {exc}") from None

    def _call(self, fname: str, vals: list[Any]) -> Any:
        """One of :data:`SAFE_FUNCTIONS` (the validator let no other name be called), with its
        arguments' types and sizes checked so no built-in can be made to allocate without bound."""
        fn = SAFE_FUNCTIONS[fname]
        for v in vals:
            _check_argument(fname, v)
        try:
            return _check_size(fn(*vals))
        except SandboxError:
            raise
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise SandboxError(f"{fname}(): {exc}") from None

    def run(self, stmts: list[ast.stmt]) -> None:
        for st in stmts:
            match st:
                case ast.Expr(value=v):
                    self.ev(v)
                case ast.Pass():
                    pass
                case ast.If(test=t, body=b, orelse=o):
                    self.run(b if self.ev(t) else o)
                case ast.Assign(targets=targets, value=v):
                    value = self.ev(v)
                    for t in targets:
                        self.assign(t, value)
                case ast.AugAssign(target=t, op=op, value=v):
                    self.assign(t, _binop(op, self.ev(_as_load(t)), self.ev(v)))
                case _:
                    raise SandboxError(f"{type(st).__name__} is not allowed")

    def assign(self, target: ast.AST, value: Any) -> None:
        if isinstance(target, ast.Name):
            self.names[target.id] = value
            return
        assert isinstance(target, ast.Subscript)
        container = self.ev(target.value)
        if not isinstance(container, dict | list):
            raise SandboxError(f"cannot assign into a {type(container).__name__}")
        try:
            container[self.ev(target.slice)] = value
        except (IndexError, TypeError) as exc:
            raise SandboxError(str(exc)) from None
        _check_size(container)


def _as_load(t: ast.AST) -> ast.AST:
    if isinstance(t, ast.Name):
        return ast.Name(id=t.id, ctx=ast.Load())
    assert isinstance(t, ast.Subscript)
    return ast.Subscript(value=_as_load(t.value), slice=t.slice, ctx=ast.Load())


def evaluate(expression: str, names: Mapping[str, Any]) -> Any:
    """Value of ``expression`` over ``names`` (the task data); raises :class:`SandboxError`."""
    tree = _parse(expression, "eval")
    try:
        return _Interp(dict(names)).ev(tree)
    except RecursionError:
        raise SandboxError("expression nested too deeply") from None


def execute(script: str, names: MutableMapping[str, Any]) -> None:
    """Run ``script``; assignments land in ``names`` (the task data)."""
    tree = _parse(script, "exec")
    assert isinstance(tree, ast.Module)
    try:
        _Interp(names).run(tree.body)
    except RecursionError:
        raise SandboxError("script nested too deeply") from None
