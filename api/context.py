"""Per-process application context: settings, database and lazily built services.

Services (voice engine, blacklist, decision engine, workflow runtime ...) are built on first use so the
API starts fast and a part whose model is not built fails only the requests that need it, with a 503.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from callvet.core.db import Database
from callvet.core.settings import Settings

__all__ = ["AppContext"]

T = TypeVar("T")


@dataclass
class AppContext:
    settings: Settings
    db: Database
    _services: dict[str, Any] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def service(self, name: str, factory: Callable[[AppContext], T]) -> T:
        svc = self._services.get(name)
        if svc is None:
            with self._lock:
                svc = self._services.get(name)
                if svc is None:
                    svc = factory(self)
                    self._services[name] = svc
        return svc  # type: ignore[no-any-return]

    def peek(self, name: str) -> Any:
        """The service ``name`` if it has been built, else None (never builds: for metrics)."""
        return self._services.get(name)

    def close(self) -> None:
        for svc in list(self._services.values()):
            closer = getattr(svc, "close", None)
            if callable(closer):
                closer()
        self._services.clear()
        self.db.dispose()
