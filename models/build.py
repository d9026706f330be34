"""``callvet models build``: run every part's model builder, in order, with a progress line each.

Each builder is a module exposing ``is_built(models_dir) -> bool`` and
``build(models_dir, *, force=False) -> list[Path]``. A builder module that does not exist yet (another
part not merged) is reported as skipped. Any other error -- a builder that raises, or a builder module
whose own imports fail -- is reported as failed with its message, the remaining builders still run
(one part's broken model must not block the others), and the CLI exits non-zero.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

__all__ = ["BUILDERS", "BuildOutcome", "Status", "build_all"]

BUILDERS: tuple[str, ...] = ("callvet.models.ge2e", "callvet.models.res2net", "callvet.models.sentence",
                             "callvet.models.credit",
                             "callvet.models.aasist", "callvet.models.whisper",
                             "callvet.models.e5", "callvet.models.spoof")


class Status(StrEnum):
    BUILT = "built"
    UP_TO_DATE = "up-to-date"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class BuildOutcome:
    module: str
    status: Status
    seconds: float = 0.0
    files: list[Path] = field(default_factory=list)
    note: str = ""

    def line(self) -> str:
        name = self.module.rsplit(".", 1)[-1]
        if self.status is Status.BUILT:
            return f"{name}: built {len(self.files)} file(s) in {self.seconds:.1f}s"
        if self.status is Status.UP_TO_DATE:
            return f"{name}: up to date"
        if self.status is Status.FAILED:
            return f"{name}: FAILED ({self.note})"
        return f"{name}: skipped ({self.note})"


def _import(module: str) -> object | None:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise


def build_all(models_dir: Path, *, force: bool = False, if_missing: bool = False,
              modules: tuple[str, ...] | None = None,
              progress: Callable[[str], None] | None = None) -> list[BuildOutcome]:
    """Build every builder's artifacts under ``models_dir``.

    ``if_missing`` only asks builders that report ``is_built() == False`` (cheap on every start);
    ``force`` rebuilds everything. ``modules`` defaults to :data:`BUILDERS`.
    """
    modules = BUILDERS if modules is None else modules
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    outcomes: list[BuildOutcome] = []
    for module in modules:
        t0 = time.perf_counter()
        try:
            mod = _import(module)
            if mod is None:
                outcome = BuildOutcome(module, Status.SKIPPED, note="module not present")
            elif if_missing and not force and mod.is_built(models_dir):  # type: ignore[attr-defined]
                outcome = BuildOutcome(module, Status.UP_TO_DATE)
            else:
                if progress is not None:
                    progress(f"{module.rsplit('.', 1)[-1]}: building ...")
                files = mod.build(models_dir, force=force)  # type: ignore[attr-defined]
                status = Status.BUILT if files else Status.UP_TO_DATE
                outcome = BuildOutcome(module, status, time.perf_counter() - t0, list(files))
        except Exception as exc:  # any builder failure is reported, then the others still run
            outcome = BuildOutcome(module, Status.FAILED, time.perf_counter() - t0,
                                   note=f"{type(exc).__name__}: {exc}")
        outcomes.append(outcome)
        if progress is not None:
            progress(outcome.line())
    return outcomes
