"""Idempotency keys: a retried request maps to the same stored row on every replica.

A client that lost an answer (a timeout, a replica that died mid-request) retries with the same
``Idempotency-Key``. The row's id is derived from the caller's API key id and that key, so the retry --
through any replica -- collides with what the first attempt stored instead of applying a second time,
and the caller is given what was stored. No table of keys is needed: the id *is* the key.
"""

from __future__ import annotations

import hashlib
import re

from callvet.core.errors import InvalidInput

__all__ = ["MAX_IDEMPOTENCY_KEY", "PATTERN", "idempotent_id"]

#: Longest idempotency key taken (a UUID is 36 characters).
MAX_IDEMPOTENCY_KEY = 128
#: What a key may be: visible ASCII, no spaces (the API declares it, so a bad key is a 422 up front).
PATTERN = r"^[!-~]{1,128}$"


def idempotent_id(scope: str, key: str) -> str:
    """32 hex digits for request ``key`` of caller ``scope`` (an API key id): the same on every replica."""
    if not re.fullmatch(PATTERN, key):
        raise InvalidInput(f"an idempotency key is 1..{MAX_IDEMPOTENCY_KEY} visible ASCII characters",
                           code="invalid_idempotency_key", field="Idempotency-Key")
    return hashlib.sha256(f"{scope}\x00{key}".encode()).hexdigest()[:32]
