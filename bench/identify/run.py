"""Identify latency through the real API: uvicorn on loopback, httpx client, 3 s of speech per request.

The server runs in a child process on a fresh data directory (SQLite, its own FAISS index). Voices are
espeak-ng speakers enrolled through the REST API; then extra random prints are written straight into the
database by this process (one transaction that bumps the blacklist generation, as another worker would),
so the running server must notice and load them before answering. The peer, measured in the same run, is
the same work in-process without HTTP (decode + VAD + embed + search), so the ratio is the cost of the
API (multipart upload, auth, database round trips, JSON).

    nice .venv/bin/python bench/identify/run.py [--requests 40] [--extra-prints 10000]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from callvet.core import auth
from callvet.core.db import Database, utcnow
from callvet.core.settings import Settings
from callvet.voice.blacklist import Blacklist
from callvet.voice.engine import VoiceEngine
from callvet.voice.tables import blacklist_identities, blacklist_samples, blacklist_state
from sqlalchemy import insert, update

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from speech import asterisk_concat, espeak, to_wav_bytes  # noqa: E402

VOICES = ["en-us+m1", "en-us+m3", "en-us+m5", "en-us+m7", "en-us+f1", "en-us+f3", "en-us+f5", "en+klatt",
          "en+klatt2", "en-gb+m2", "en-gb+f2", "en-gb+m4"]
ENROL_TEXT = ("My name is John and I would like to apply for a credit card today please, "
              "I was born in nineteen eighty two.")
PROBE_TEXT = "The quick brown fox jumps over the lazy dog near the bank."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def three_seconds(engine: VoiceEngine, x: np.ndarray, sr: int) -> bytes:
    """A probe clipped so VAD finds just over 3 s of net speech (the engine's minimum)."""
    for cut in np.arange(3.2, len(x) / sr, 0.1):
        clip = x[: int(cut * sr)]
        if engine.analyse(engine.decode(to_wav_bytes(clip, sr))).net_speech_s >= 3.05:
            return to_wav_bytes(clip, sr)
    return to_wav_bytes(x, sr)


def add_random_prints(db: Database, engine: VoiceEngine, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with db.begin() as conn:
        ids = [conn.execute(insert(blacklist_identities).values(
            label=f"synthetic {i}", notes="bench", created_by="bench", created_at=utcnow())
            .returning(blacklist_identities.c.id)).scalar_one() for i in range(max(1, n // 2))]
        x = rng.standard_normal((n, engine.dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        conn.execute(insert(blacklist_samples), [
            {"identity_id": ids[i % len(ids)], "backend_id": engine.backend_id, "dim": engine.dim,
             "vector": x[i].astype("<f4").tobytes(), "stats_mean": 0.0, "stats_std": 1.0, "net_speech_s": 3.0,
             "sha256": f"{i:064x}", "created_by": "bench", "created_at": utcnow()} for i in range(n)])
        conn.execute(update(blacklist_state).where(blacklist_state.c.id == 1)
                     .values(generation=blacklist_state.c.generation + 1))


def timed(client: httpx.Client, url: str, headers: dict[str, str], data: bytes, n: int) -> tuple[np.ndarray,
                                                                                                  list[dict]]:
    out, bodies = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.post(url, headers=headers, files={"audio": ("probe.wav", data, "audio/wav")})
        out.append(time.perf_counter() - t0)
        r.raise_for_status()
        bodies.append(r.json())
    return np.array(out) * 1000, bodies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--extra-prints", type=int, default=10_000)
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="callvet-bench-identify-"))
    settings = Settings(data_dir=tmp / "var")
    settings.ensure_dirs()
    db = Database(settings.database_url)
    db.create_schema()
    analyst = auth.create_key(db, "analyst", "bench")
    robot = auth.create_key(db, "robot", "bench")
    engine = VoiceEngine.from_settings(settings)
    port = free_port()
    env = {**os.environ, "CALLVET_DATA_DIR": str(settings.data_dir),
           "CALLVET_DATABASE_URL": settings.database_url}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "callvet.api.app:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"], env=env)
    rows: list[tuple[str, np.ndarray]] = []
    try:
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base, timeout=120)
        for _ in range(300):
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        ha, hr = {"Authorization": f"Bearer {analyst}"}, {"Authorization": f"Bearer {robot}"}
        for v in VOICES:
            ident = client.post("/v1/blacklist/identities", json={"label": v}, headers=ha).json()["id"]
            clip = to_wav_bytes(espeak(ENROL_TEXT, v), 16000)
            r = client.post(f"/v1/blacklist/identities/{ident}/samples", headers=ha,
                            files={"audio": ("e.wav", clip, "audio/wav")})
            r.raise_for_status()
        fraud = three_seconds(engine, espeak(PROBE_TEXT, VOICES[1]), 16000)
        # A real human (Asterisk's prompt voice, 8 kHz): other espeak voices score above the plain-cosine
        # threshold against some of these 12 synthetic speakers, which share one synthesiser's timbre.
        genuine = three_seconds(engine, asterisk_concat(["vm-intro", "vm-options"]), 8000)

        local = Blacklist(db, engine, tmp / "peer-faiss")
        peer = []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            local.identify(fraud)
            peer.append(time.perf_counter() - t0)
        rows.append((f"peer: in-process identify, {len(VOICES)} prints (no HTTP)", np.array(peer) * 1000))

        t, bodies = timed(client, "/v1/voiceprint/identify", hr, fraud, args.requests)
        assert bodies[0]["alarm"] and bodies[0]["matches"][0]["label"] == VOICES[1], bodies[0]
        rows.append((f"HTTP identify, enrolled voice, {bodies[0]['searched']} prints", t))
        t, bodies = timed(client, "/v1/voiceprint/identify", hr, genuine, args.requests)
        rows.append((f"HTTP identify, genuine caller (real human, 8 kHz), {bodies[0]['searched']} prints "
                     f"(alarm={bodies[0]['alarm']})", t))

        add_random_prints(db, engine, args.extra_prints)
        t0 = time.perf_counter()
        first = client.post("/v1/voiceprint/identify", headers=hr,
                            files={"audio": ("p.wav", fraud, "audio/wav")}).json()
        sync_ms = (time.perf_counter() - t0) * 1000
        assert first["searched"] == len(VOICES) + args.extra_prints, first["searched"]
        t, bodies = timed(client, "/v1/voiceprint/identify", hr, fraud, args.requests)
        assert bodies[0]["alarm"]
        rows.append((f"HTTP identify, enrolled voice, {bodies[0]['searched']:,} prints", t))
    finally:
        server.terminate()
        server.wait(timeout=30)
    lines = [
        "# Identify latency through the API (bench/identify/run.py)",
        "",
        f"uvicorn (1 worker) on loopback, httpx client, sequential requests; probe = speech clipped "
        f"to just over 3 s of net speech, WAV upload (espeak 16 kHz; the genuine caller is Asterisk's "
        f"human prompt voice at 8 kHz); encoder {engine.encoder_name} "
        f"({engine.backend_id}); {args.requests} requests per row; {platform.machine()}, {os.cpu_count()} "
        f"cores shared with other jobs (load average {os.getloadavg()[0]:.1f} at the end).",
        "",
        "| case | p50 ms | p95 ms | p50 vs in-process peer |",
        "|---|---:|---:|---:|",
    ]
    peer_p50 = float(np.percentile(rows[0][1], 50))
    for name, ms in rows:
        p50 = float(np.percentile(ms, 50))
        lines.append(f"| {name} | {p50:.1f} | {np.percentile(ms, 95):.1f} | x{p50 / peer_p50:.2f} |")
    lines += [
        "",
        f"After {args.extra_prints:,} prints were written to the database by another process, the first "
        f"identify (which notices the new generation and loads them into the server's index) took "
        f"{sync_ms:.0f} ms.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
