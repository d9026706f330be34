"""The fresh-machine lesson: every system path the tests and the service read belongs to a Debian
package that ``./dev`` installs (its ``APT_PACKAGES`` or their dependencies), checked with ``dpkg -S``."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
from callvet.core.syspaths import SYSTEM_PATHS, SYSTEM_PROGRAMS

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ["api", "cli", "core", "decision", "models", "questionnaire", "voice", "workflow", "tests", "bench"]
PREFIXES = ("/usr/", "/etc/", "/opt/")

pytestmark = pytest.mark.skipif(shutil.which("dpkg") is None, reason="not a Debian system")


def apt_packages(dev_script: Path = ROOT / "dev") -> set[str]:
    lines = re.findall(r'^APT_PACKAGES="([^"]*)"', dev_script.read_text(), re.M)
    assert lines, "./dev has no APT_PACKAGES line"
    return {p for line in lines for p in line.split() if p != "$APT_PACKAGES"}


def _depends(pkg: str) -> set[str]:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Depends}, ${Pre-Depends}", pkg],
                         capture_output=True, text=True)
    names = set()
    for alt in out.stdout.split(","):
        for choice in alt.split("|"):
            name = choice.strip().split(" ")[0].split(":")[0]
            if name:
                names.add(name)
    return names


@lru_cache(maxsize=1)
def _essential() -> frozenset[str]:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Essential}\\n"], capture_output=True,
                         text=True, check=True).stdout
    return frozenset(line.split()[0] for line in out.splitlines() if line.endswith(" yes"))


def installed_closure(roots: set[str]) -> set[str]:
    """``roots`` plus everything they depend on, recursively, plus Debian's essential packages."""
    seen: set[str] = set()
    todo = list(roots | _essential())
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo.extend(_depends(p) - seen)
    return seen


def owners(path: str) -> set[str]:
    out = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
    if out.returncode != 0:
        return set()
    pkgs: set[str] = set()
    for line in out.stdout.splitlines():
        head = line.split(": ", 1)[0]
        if "diversion" in head:
            continue
        pkgs.update(p.strip().split(":")[0] for p in head.split(","))
    return pkgs


def violations(paths: dict[str, str], allowed: set[str]) -> list[str]:
    """One message per path that is missing or owned by no package in ``allowed``."""
    bad = []
    for path, why in sorted(paths.items()):
        if not Path(path).exists():
            bad.append(f"{path} ({why}) does not exist")
            continue
        found = owners(path) or owners(str(Path(path).resolve()))
        if not found & allowed:
            bad.append(f"{path} ({why}) belongs to {sorted(found) or 'no package'}, "
                       "none of which ./dev installs")
    return bad


def literal_paths() -> dict[str, str]:
    """Every string literal under /usr, /etc or /opt in the product, test and bench code."""
    found: dict[str, str] = {}
    for part in SCANNED:
        for py in sorted((ROOT / part).rglob("*.py")):
            if py.resolve() == Path(__file__).resolve():
                continue
            for node in ast.walk(ast.parse(py.read_text(), str(py))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    v = node.value.strip()
                    if v.startswith(PREFIXES) and "\n" not in v and " " not in v:
                        found.setdefault(v.split("{")[0].rstrip("/") or v, str(py.relative_to(ROOT)))
    return found


def read_paths() -> dict[str, str]:
    paths = {p.path: p.used_by for p in SYSTEM_PATHS}
    for prog in SYSTEM_PROGRAMS:
        paths[shutil.which(prog.path) or f"/nonexistent/{prog.path}"] = prog.used_by
    paths.update(literal_paths())
    return paths


def test_the_scan_finds_the_asterisk_prompts() -> None:
    assert "/usr/share/asterisk/sounds/en_US_f_Allison" in literal_paths()


def test_every_system_path_belongs_to_a_package_dev_installs() -> None:
    allowed = installed_closure(apt_packages())
    assert violations(read_paths(), allowed) == []


def test_a_path_of_a_package_dev_does_not_install_fails(tmp_path: Path) -> None:
    """The check can fail: the old ``sounds/en`` link's package, a stray file and a missing path."""
    allowed = installed_closure(apt_packages())
    other = next(p for p in subprocess.run(["dpkg-query", "-W", "-f=${Package}\\n"], capture_output=True,
                                           text=True, check=True).stdout.split() if p not in allowed)
    files = [f for f in subprocess.run(["dpkg", "-L", other], capture_output=True, text=True).stdout.split()
             if Path(f).is_file()]
    stray = tmp_path / "stray.wav"
    stray.write_bytes(b"")
    paths = {str(stray): "unpackaged", "/usr/share/asterisk/sounds/en/nope.wav": "missing"}
    if files:
        paths[files[0]] = f"owned by {other}"
    bad = violations(paths, allowed)
    assert len(bad) == len(paths)


def test_dropping_a_package_from_dev_is_caught(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.write_text((ROOT / "dev").read_text().replace("asterisk-core-sounds-en-wav", ""))
    allowed = installed_closure(apt_packages(dev))
    bad = violations({p.path: p.used_by for p in SYSTEM_PATHS}, allowed)
    assert any("en_US_f_Allison" in b for b in bad)
