"""Run a bench script of another checkout with ``callvet`` imported from that checkout (the old code path
as a peer measured in the same session, e.g. a ``git worktree add --detach ../peer main``).

    .venv/bin/python bench/workflow/other_checkout.py /work/wt/peer bench/workflow/cases_day.py --n 1000

The venv's editable install maps ``callvet`` to this checkout; this maps it to the other one before
anything imports it, so the other checkout's bench runs its own code on the same interpreter and packages.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import runpy
import sys
from pathlib import Path
from typing import Any

__all__: list[str] = []


class _OtherCheckout(importlib.abc.MetaPathFinder):
    """``callvet`` is ``cli/`` and ``callvet.X`` is ``X/`` (pyproject's package-dir), in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        parts = fullname.split(".")
        if parts[0] != "callvet" or len(parts) > 2:
            return None  # deeper modules are found through their package's __path__
        base = self.root / "cli" if len(parts) == 1 else self.root / parts[1]
        if len(parts) == 2 and not (base / "__init__.py").exists():
            base = self.root / "cli" / parts[1]
        if (base / "__init__.py").exists():
            return importlib.util.spec_from_file_location(
                fullname, base / "__init__.py", submodule_search_locations=[str(base)]
            )
        if base.with_suffix(".py").exists():
            return importlib.util.spec_from_file_location(fullname, base.with_suffix(".py"))
        return None


def main() -> None:
    root = Path(sys.argv[1]).resolve()
    script = root / sys.argv[2]
    sys.meta_path.insert(0, _OtherCheckout(root))
    sys.argv = [str(script), *sys.argv[3:]]
    sys.path.insert(0, str(script.parent))
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
