"""Shared plumbing used by several callvet parts: settings, database, keys and roles, audit, errors.

Exception tree: the docstring of :mod:`callvet.core.errors` (every error raised on purpose is a
``CallvetError``; only the API maps them to HTTP).
"""

from callvet.core.errors import (
    ArtifactError,
    CallvetError,
    Conflict,
    Forbidden,
    InvalidArgument,
    InvalidInput,
    NotFound,
    Unavailable,
)
from callvet.core.settings import Settings, get_settings

__all__ = [
    "ArtifactError",
    "CallvetError",
    "Conflict",
    "Forbidden",
    "InvalidArgument",
    "InvalidInput",
    "NotFound",
    "Settings",
    "Unavailable",
    "get_settings",
]
