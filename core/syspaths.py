"""Every system path and program the service and the tests read, in one registry.

A fresh machine passes only if each of these comes from a Debian package that ``./dev`` installs; the
test ``tests/test_core_syspaths.py`` checks every entry (and every ``/usr``, ``/etc``, ``/opt`` string
literal in the code) with ``dpkg -S`` against ``./dev``'s ``APT_PACKAGES`` and their dependencies. Add a
path here when new code reads one, and its package to ``APT_PACKAGES``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SYSTEM_PATHS", "SYSTEM_PROGRAMS", "SystemPath"]


@dataclass(frozen=True)
class SystemPath:
    path: str
    used_by: str


SYSTEM_PATHS: tuple[SystemPath, ...] = (
    SystemPath("/usr/share/asterisk/sounds/en_US_f_Allison",
               "tests/speech.py and bench/voice: real human speech at 8 kHz"),
)

#: Programs run by name (resolved on ``PATH``).
SYSTEM_PROGRAMS: tuple[SystemPath, ...] = (
    SystemPath("espeak-ng", "tests/speech.py: synthetic speakers"),
)
