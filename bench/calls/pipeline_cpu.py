"""CPU per call-second of the call pipeline in one process, for comparing two versions of the code.

Runs ``--calls`` concurrent calls through a real :class:`~callvet.voice.call.server.CallServer` (real
Silero VAD batched across calls, prosody, the call record on SQLite, no voiceprint models: the robot is
told ``voiceprint_unavailable``) over in-memory transports, each fed as fast as back-pressure lets it,
and prints one JSON line: process CPU seconds (all threads) per second of call audio, wall time, and the
events the robots got (so two versions can be checked to behave alike). CPU time, unlike latency, barely
moves with what else the machine runs, which is why this is the figure to compare on a shared box; run
it alternately with each version's interpreter in the same session::

    nice -n 10 .venv/bin/python bench/calls/pipeline_cpu.py --calls 20 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

PHRASES = ["I work as a nurse at the city hospital.", "About four years now, since twenty twenty.",
           "The card is for groceries and fuel.", "Yes, I live at the same address."]


class Transport:
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> str | bytes | None:
        return await self.inbox.get()

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


def _audio(seconds: float) -> np.ndarray:
    from speech import espeak

    parts, n = [], 0
    i = 0
    while n < seconds * 8000:
        x = espeak(PHRASES[i % len(PHRASES)], sample_rate=8000)
        gap = np.zeros(int(0.9 * 8000), np.float32)
        parts += [x, gap]
        n += len(x) + len(gap)
        i += 1
    return np.concatenate(parts)[: int(seconds * 8000)]


async def _feed(t: Transport, x: np.ndarray, k: int) -> None:
    from callvet.voice.call.simulate import mulaw_encode  # (in both the old and the new code)

    await t.inbox.put(json.dumps({"event": "start", "start": {
        "streamSid": f"MZ{k}", "callSid": f"CA{k}", "customParameters": {"application_id": f"a{k}"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
    for j, i in enumerate(range(0, len(x), 160)):
        payload = base64.b64encode(mulaw_encode(x[i : i + 160])).decode()
        await t.inbox.put(json.dumps({"event": "media", "media": {"track": "inbound", "chunk": str(j + 1),
                                                                  "payload": payload}}))
        if j % 50 == 0:
            await asyncio.sleep(0)
    await t.inbox.put(json.dumps({"event": "mark", "mark": {"name": "end"}}))
    await t.inbox.put(json.dumps({"event": "stop"}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    from callvet.core.db import Database
    from callvet.voice.call.pipeline import CallConfig
    from callvet.voice.call.session import CallServer, default_vad_factory

    x = _audio(args.seconds)
    default_vad_factory(8000, 700).feed(x[:8000])  # load the model outside the measurement
    tmp = Path(tempfile.mkdtemp(prefix="callvet-bench-pipeline-"))
    db = Database(f"sqlite:///{tmp / 'calls.db'}")
    db.create_schema()
    server = CallServer(db, cfg=CallConfig(workers=2, max_lag_s=1e9), scoring=None)
    transports = [Transport() for _ in range(args.calls)]

    async def go() -> None:
        await asyncio.gather(*(server.handle(t, "twilio", "robot:bench") for t in transports),
                             *(_feed(t, x, k) for k, t in enumerate(transports)))

    c0, w0 = time.process_time(), time.perf_counter()
    asyncio.run(go())
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    server.close()
    audio_s = args.calls * len(x) / 8000
    events = Counter(e.get("event") for t in transports for e in t.sent)
    print(json.dumps({"code": str(ROOT), "calls": args.calls, "audio_s": round(audio_s, 1),
                      "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                      "cpu_ms_per_call_s": round(1000 * cpu / audio_s, 2),
                      "load1": float(Path("/proc/loadavg").read_text().split()[0]),
                      "events": dict(sorted(events.items()))}))


if __name__ == "__main__":
    main()
