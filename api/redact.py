"""Keep secrets out of logs: a logging filter that rewrites every record before any handler sees it.

Redacted, wherever they appear in a line (uvicorn's access log writes the full request target, so a
``?token=`` would land there verbatim): ``Authorization: Bearer ...`` values, ``token=`` / ``key=`` /
``api_key=`` / ``secret=`` / ``password=`` query or form values, and callvet keys themselves
(``cv_<key_id>_<secret>``; the key id stays, since it names the key without being one).

:func:`install` puts the filter on the root logger's and uvicorn's handlers and loggers; ``create_app``
calls it, so ``callvet serve`` (uvicorn with the app factory) and any other host of the app get it.
"""

from __future__ import annotations

import logging
import re

__all__ = ["RedactingFilter", "install", "redact"]

_KEY = re.compile(r"\bcv_([0-9a-f]{6,32})_[A-Za-z0-9_\-]{8,}")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]{6,}")
_PARAM = re.compile(r"(?i)([?&;\s\"'{,]|^)((?:access_|stream_|api_)?(?:token|key|secret|password|api_key))"
                    r"(=|\"?\s*:\s*\"?)([^&\s\"',}]+)")

MASK = "***"


def redact(text: str) -> str:
    """``text`` with every secret replaced by ``***``."""
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _KEY.sub(lambda m: f"cv_{m.group(1)}_{MASK}", text)
    return _PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}{MASK}", text)


def _clean(arg: object) -> object:
    if arg is None or isinstance(arg, (int, float)):
        return arg
    text = arg if isinstance(arg, str) else str(arg)
    clean = redact(text)
    return clean if clean != text or isinstance(arg, str) else arg


class RedactingFilter(logging.Filter):
    """Redacts the record's message and each string argument in place (keeping the argument tuple, which
    uvicorn's access formatter unpacks); drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_callvet_redacted", False):
            return True
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _clean(v) for k, v in record.args.items()}
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record._callvet_redacted = True
        return True

_FILTER = RedactingFilter()
_LOGGERS = ("", "uvicorn", "uvicorn.access", "uvicorn.error", "callvet", "fastapi", "httpx")


def install() -> RedactingFilter:
    """Attach the filter to the known loggers and to every handler they have (idempotent)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    return _FILTER
