"""Random identifiers from a buffered CSPRNG: one ``os.urandom`` call for hundreds of ids.

Issue 17's profile of ``callvet serve`` under load: the event loop spent about a tenth of its samples in
``uuid.uuid4`` (request ids, decision ids, outbox event ids; three per stored decision). Not for the
bytes: ``os.urandom`` releases the GIL around its system call, the group-commit writer threads take it,
and the loop then waits to get it back. Here the bytes come from the same source, the kernel's CSPRNG,
read 4 KiB at a time (256 ids of 128 bits), so they are exactly as unpredictable as ``uuid4``'s.

The buffer is per process: it is dropped in a forked child (:func:`os.register_at_fork`), or two
replicas forked from one supervisor (``callvet cluster``) would hand out the same ids. A lock makes it
safe from any thread.
"""

from __future__ import annotations

import os
import threading
import uuid

__all__ = ["random_bytes", "random_hex", "uuid4"]

_CHUNK = 4096
_lock = threading.Lock()
_buf = b""
_pos = 0


def _reset() -> None:
    global _buf, _pos
    _buf, _pos = b"", 0


os.register_at_fork(after_in_child=_reset)


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the kernel's CSPRNG (buffered; ``n`` above the buffer reads directly)."""
    global _buf, _pos
    if n > _CHUNK // 4:
        return os.urandom(n)
    with _lock:
        if _pos + n > len(_buf):
            _buf, _pos = os.urandom(_CHUNK), 0
        out = _buf[_pos:_pos + n]
        _pos += n
    return out


def random_hex(nbytes: int = 16) -> str:
    """``nbytes`` random bytes as hex (32 characters by default, as ``uuid4().hex`` is long)."""
    return random_bytes(nbytes).hex()


def uuid4() -> uuid.UUID:
    """A version 4 UUID, as :func:`uuid.uuid4` makes it, from the buffered bytes."""
    return uuid.UUID(bytes=random_bytes(16), version=4)
