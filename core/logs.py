"""Structured logs: one JSON object per line, with the request id of the request being served.

The id comes from the caller's ``X-Request-ID`` (when it is a plain token of at most 64 characters) or is
made here, is echoed in the response, and is attached to every log line written while the request runs
(:data:`request_id` is a context variable, so it follows the request across ``await``s and into
``run_in_threadpool``). ``callvet serve`` installs :func:`logging_config` for its own and uvicorn's loggers.
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from callvet.core.ids import random_hex

__all__ = ["JsonFormatter", "RequestIdFilter", "logging_config", "new_request_id", "request_id"]

request_id: ContextVar[str | None] = ContextVar("callvet_request_id", default=None)

_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
_STD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "request_id"}


def new_request_id(incoming: str | None = None) -> str:
    """The caller's id when it is safe to log and echo, else a fresh one."""
    if incoming and _VALID_ID.match(incoming):
        return incoming
    return random_hex()


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """``ts``, ``level``, ``logger``, ``msg``, ``request_id``, extras passed with ``extra=``, and the
    exception text; non-JSON values are written with ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            out["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def logging_config(fmt: str = "json", level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for callvet and uvicorn (pass as uvicorn's ``log_config``)."""
    formatter = ({"()": "callvet.core.logs.JsonFormatter"} if fmt == "json"
                 else {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"})
    handler = {"class": "logging.StreamHandler", "formatter": "main", "filters": ["request_id"],
               "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "callvet.core.logs.RequestIdFilter"}},
        "formatters": {"main": formatter},
        "handlers": {"main": handler},
        "root": {"handlers": ["main"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": level, "propagate": True},
        },
    }
