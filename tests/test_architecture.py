"""Issue 10's size limits on the product packages: modules <= 600 lines, functions <= 80 lines.

A newcomer reads a module in one sitting and a function on one screen; past these sizes a part is
doing two jobs. Every product package is measured (api, cases, cli, core, decision, forms, models,
portrait, questionnaire, services, sim, voice, workflow), no exceptions.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("api", "cases", "cli", "core", "decision", "forms", "models", "portrait", "questionnaire",
           "services", "sim", "voice", "workflow")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80



def _modules() -> list[Path]:
    out: list[Path] = []
    for part in PRODUCT:
        out += [p for p in sorted((ROOT / part).rglob("*.py")) if "artifacts" not in p.parts]
    return out


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, int]]:
    """(qualified name, lines from ``def`` to the last line of the body) of every function."""
    found: list[tuple[str, int]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{node.name}"
            found.append((name, (node.end_lineno or node.lineno) - node.lineno + 1))
            found += _functions(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            found += _functions(node, f"{prefix}{node.name}.")
    return found


def _offenders() -> dict[tuple[str, str | None], int]:
    out: dict[tuple[str, str | None], int] = {}
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            out[(rel, None)] = lines
        for name, n in _functions(ast.parse(text)):
            if n > MAX_FUNCTION_LINES:
                out[(rel, name)] = n
    return out


def test_the_product_packages_are_found() -> None:
    mods = {p.relative_to(ROOT).as_posix() for p in _modules()}
    assert {"services/__init__.py", "core/errors.py", "voice/engine.py"} <= mods
    assert len(mods) > 100


def test_modules_and_functions_stay_small() -> None:
    found = _offenders()
    assert not found, "over the limit (module > 600 lines, function > 80): " + ", ".join(
        f"{path}{':' + name if name else ''} ({n})" for (path, name), n in sorted(found.items(),
                                                                                   key=lambda kv: kv[0][0]))


def test_the_measure_counts_what_it_should() -> None:
    body = "\n".join(f"        x{i} = {i}" for i in range(85))
    tree = ast.parse(f"class A:\n    def f(self):\n{body}\n\ndef g():\n    pass\n")
    sizes = dict(_functions(tree))
    assert sizes["A.f"] == 86 and sizes["g"] == 2
