"""core.ids: buffered random ids are unique, well formed, and never repeated by a forked child."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor

from callvet.core import ids
from callvet.core.logs import new_request_id


def test_ids_are_unique_and_well_formed() -> None:
    many = [ids.random_hex() for _ in range(5000)]
    assert len(set(many)) == 5000 and all(len(x) == 32 and int(x, 16) >= 0 for x in many)
    u = ids.uuid4()
    assert u.version == 4 and u.variant == uuid.RFC_4122 and uuid.UUID(str(u)) == u
    assert len(ids.random_bytes(10_000)) == 10_000  # beyond the buffer: read directly
    assert len(new_request_id()) == 32 and new_request_id("caller-7") == "caller-7"


def test_threads_never_share_bytes() -> None:
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: ids.random_hex(), range(4000)))
    assert len(set(got)) == 4000


def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    ids.random_hex()  # the parent has a partly used buffer
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, "".join(ids.random_hex() for _ in range(50)).encode())
        os._exit(0)
    os.close(w)
    child = b""
    while chunk := os.read(r, 65536):
        child += chunk
    os.close(r)
    os.waitpid(pid, 0)
    parent = "".join(ids.random_hex() for _ in range(50))
    child_ids = {child[i:i + 32] for i in range(0, len(child), 32)}
    assert len(child_ids) == 50
    assert not child_ids & {parent[i:i + 32].encode() for i in range(0, len(parent), 32)}
