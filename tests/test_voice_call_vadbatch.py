"""Batched VAD across calls gives each call the events of its own VadStream."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from callvet.sim.calls import mulaw_encode
from callvet.voice.call.vadbatch import VadHub, VadLine, run_batched
from callvet.voice.vad import SileroVad, VadStream, default_vad
from speech import asterisk, espeak


def _calls() -> list[np.ndarray]:
    z = np.zeros(4000, np.float32)
    return [
        np.concatenate([z, espeak("I work at the hospital.", sample_rate=8000), z, z,
                        espeak("Four years now.", sample_rate=8000), z]),
        np.concatenate([asterisk("vm-intro"), z, z]),
        np.concatenate([z, z, espeak("Yes.", "en-us+f2", sample_rate=8000), z, z]),
    ]


def test_batched_probabilities_and_events_match_the_per_call_vad() -> None:
    vad: SileroVad = default_vad()
    calls = _calls()
    chunks = [160, 480, 1000]  # each call arrives in its own rhythm
    lines = [VadLine(8000) for _ in calls]
    streams = [line.stream(700) for line in lines]
    plain = [VadStream(sample_rate=8000, min_silence_ms=700) for _ in calls]
    got: list[list[tuple[str, float]]] = [[] for _ in calls]
    want: list[list[tuple[str, float]]] = [[] for _ in calls]
    pos = [0] * len(calls)
    while any(p < len(x) for p, x in zip(pos, calls, strict=True)):
        jobs = []
        for i, x in enumerate(calls):
            if pos[i] < len(x):
                jobs.append((i, x[pos[i] : pos[i] + chunks[i]]))
                pos[i] += chunks[i]
        run_batched(vad._session, [(lines[i], c) for i, c in jobs])
        for i, c in jobs:
            got[i] += [(e.kind, e.t_s) for e in streams[i].feed(c)]
            want[i] += [(e.kind, e.t_s) for e in plain[i].feed(c)]
    assert got == want
    assert all(w for w in want[:2])
    assert all(not line.replay.probs for line in lines)


def test_hub_batches_calls_submitted_in_one_loop_turn() -> None:
    calls = [x[:16000] for x in _calls()]
    pool = ThreadPoolExecutor(2)
    hub = VadHub(pool)
    lines = [VadLine(8000) for _ in calls]

    async def go() -> list[np.ndarray]:
        return list(await asyncio.gather(*(hub.submit(line, mulaw_encode(x), "mulaw")
                                           for line, x in zip(lines, calls, strict=True))))

    out = asyncio.run(go())
    pool.shutdown()
    assert hub.runs == 1 and hub.windows == 3 * (16000 // 256)
    for x, y, line in zip(calls, out, lines, strict=True):
        assert y.shape == x.shape and np.max(np.abs(y - x)) < 0.05
        assert len(line.replay.probs) == 16000 // 256


def test_hub_failure_reaches_every_waiting_call() -> None:
    class Broken:
        def run(self, *a: object, **k: object) -> None:
            raise RuntimeError("onnx down")

    pool = ThreadPoolExecutor(1)
    hub = VadHub(pool, session=Broken())

    async def go() -> list[object]:
        return list(await asyncio.gather(*(hub.submit(VadLine(8000), bytes(800), "mulaw") for _ in range(2)),
                                         return_exceptions=True))

    res = asyncio.run(go())
    pool.shutdown()
    assert all(isinstance(r, RuntimeError) for r in res)
    with pytest.raises(ValueError):
        VadLine(44100)
