"""Run import-linter on the callvet package as installed from its top-level folders.

callvet maps top-level folders (voice/, core/, ...) onto subpackages through setuptools' package-dir,
so the editable install's ``callvet.__path__`` is only ``cli/`` and grimp, which walks the package's
folder, would see neither ``callvet.core`` nor ``callvet.voice``. This script lays the package out as
an installed wheel would (symlinks under var/importgraph/callvet, built from pyproject's package-dir),
puts that folder first on the import path and runs ``lint-imports`` with the contracts in pyproject.toml.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "var" / "importgraph"


def build_tree() -> Path:
    """Mirror the package layout with symlinks; return the folder to put on the import path."""
    mapping: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    shutil.rmtree(TREE, ignore_errors=True)
    pkg = TREE / "callvet"
    pkg.mkdir(parents=True)
    for src in sorted((ROOT / mapping["callvet"]).glob("*.py")):
        (pkg / src.name).symlink_to(src)
    for name, folder in mapping.items():
        parts = name.split(".")
        if len(parts) != 2:
            continue  # nested packages live inside their parent's folder already
        (pkg / parts[1]).symlink_to(ROOT / folder)
    return TREE


def main() -> int:
    tree = build_tree()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.call([str(exe), str(ROOT / "pyproject.toml"), *sys.argv[1:]], env=env)


if __name__ == "__main__":
    raise SystemExit(main())
