from __future__ import annotations

import time

import pytest
from callvet.workflow import sandbox
from callvet.workflow.sandbox import SandboxError

ESCAPES = [
    "__import__('os').system('id')",
    "().__class__.__bases__[0].__subclasses__()",
    "''.__class__.__mro__[1].__subclasses__()",
    "open('/etc/passwd').read()",
    "(lambda: 1)()",
    "(lambda f: f(f))(lambda f: f(f))",
    "[x for x in range(10)]",
    "f'{x.__class__}'",
    "f'{x!r:>{10**9}}'",
    "'{0.__class__}'.format(x)",
    "'%s' % x",
    "getattr(x, '__class__')",
    "eval('1')",
    "exec('import os')",
    "globals()",
    "x.real",
    "_secret",
    "__builtins__",
    "type(x)",
    "vars()",
    "compile('1', 's', 'eval')",
    "b'bytes'",
    "max(*[1, 2])",
    "round(x, ndigits=2)",
]

RUNTIME_BOMBS = [
    "9**9**9",
    "2**100000",
    "10**64**2",
    "'a' * 10**9",
    "[0] * 10**8",
    "str([[0] * 10000] * 10000)",
    "sum([[1]] * 10)",
    "round(5, -10**9)",
    "round(5, 10**9)",
    "round(x, -25)",
    "(-8) ** 0.5",
    "big + 1",
    "big * big",
]


@pytest.mark.parametrize("expr", ESCAPES)
def test_escape_attempts_are_rejected_at_validation(expr: str) -> None:
    with pytest.raises(SandboxError):
        sandbox.validate(expr)


@pytest.mark.parametrize("expr", RUNTIME_BOMBS)
def test_resource_bombs_fail_fast(expr: str) -> None:
    start = time.perf_counter()
    with pytest.raises(SandboxError):
        sandbox.evaluate(expr, {"x": 1, "big": 1 << 4000})
    assert time.perf_counter() - start < 5  # generous bound: a real 9**9**9 would never return


def test_scripts_cannot_loop_import_or_define() -> None:
    for script in [
        "import os",
        "from os import path",
        "while True: pass",
        "for i in [1]: pass",
        "def f(): pass",
        "class A: pass",
        "x.y = 1",
        "del x",
        "with a: pass",
        "try:\n pass\nexcept: pass",
        "global x",
        "async def f(): pass",
        "raise ValueError()",
        "assert False",
        "x = yield 1",
    ]:
        with pytest.raises(SandboxError):
            sandbox.validate(script, mode="exec")


def test_conditions_over_task_data() -> None:
    data = {
        "decision": "approve",
        "credit_limit": 30000,
        "auto_issue_max": 50000,
        "docs": ["id_card"],
        "app": {"income": 15000.0},
    }
    assert sandbox.evaluate("decision == 'approve' and credit_limit <= auto_issue_max", data) is True
    assert sandbox.evaluate("'id_card' in docs and len(docs) == 1", data) is True
    assert sandbox.evaluate("app['income'] * 3 >= credit_limit", data) is True
    assert sandbox.evaluate("max(1, 2, 3) + abs(-2) + round(2.5)", data) == 7
    assert sandbox.evaluate("2 ** 10 if decision != 'decline' else 0", data) == 1024
    assert sandbox.evaluate("docs[0][:2]", data) == "id"
    with pytest.raises(SandboxError, match="not defined"):
        sandbox.evaluate("missing_name > 1", data)


def test_scripts_assign_into_task_data() -> None:
    data = {"requested_limit": 30000, "current_limit": 20000, "calls_done": 0, "m": {"a": 1}}
    sandbox.execute(
        "increase = requested_limit - current_limit\ncalls_done += 1\nm['b'] = increase\n"
        "if increase > 5000:\n    big = True\nelse:\n    big = False",
        data,
    )
    assert data["increase"] == 10000 and data["calls_done"] == 1 and data["m"]["b"] == 10000
    assert data["big"] is True


def test_interpreter_does_not_use_eval_builtins() -> None:
    data: dict[str, object] = {}
    with pytest.raises(SandboxError):
        sandbox.execute("__builtins__ = 1", data)
    with pytest.raises(SandboxError):
        sandbox.evaluate("len(x)", {"x": 5})
    assert data == {}


@pytest.mark.parametrize(
    "expr",
    ["(" * 5000 + "1" + ")" * 5000, "-" * 15000 + "1", "not " * 4000 + "x", "a" + "[0]" * 5000, "x" * 30000],
)
def test_pathological_nesting_and_size_are_typed_errors(expr: str) -> None:
    with pytest.raises(SandboxError):
        sandbox.evaluate(expr, {"x": 1, "a": [1]})


def test_round_within_bounds_still_works() -> None:
    assert sandbox.evaluate("round(1234.5678, 2)", {}) == 1234.57
    assert sandbox.evaluate("round(1234, -2)", {}) == 1200


def test_step_budget_bounds_long_evaluations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "MAX_STEPS", 50)
    script = "\n".join(f"a{i} = {i} + 1" for i in range(40))
    with pytest.raises(SandboxError, match="steps"):
        sandbox.execute(script, {})
    sandbox.execute("a = 1 + 1", {})
