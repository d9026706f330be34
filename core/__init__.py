"""Shared plumbing used by several callvet parts: settings, database, keys and roles, audit, errors.

Exception tree (inner modules raise these; only the API maps them to HTTP)::

    CallvetError
    ├── InvalidInput        bad data from a caller (HTTP 422); ``code`` is a stable reason code
    ├── NotFound            unknown id (HTTP 404)
    ├── Conflict            state does not allow it, e.g. completing a task twice (HTTP 409)
    ├── Forbidden           role may not do this (HTTP 403)
    └── Unavailable         a model or artifact the request needs is not built (HTTP 503)
"""

from callvet.core.errors import CallvetError, Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from callvet.core.settings import Settings, get_settings

__all__ = [
    "CallvetError",
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "Settings",
    "Unavailable",
    "get_settings",
]
