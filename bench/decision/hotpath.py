"""Stored single decisions through HTTP against the same server's trivial ``/healthz``, with wrk (issue 17).

    nice .venv/bin/python bench/decision/hotpath.py [--seconds 10] [--connections 8] [--replicas 1 2]

For 1 replica wrk talks to ``callvet serve`` directly; for 2, to HAProxy in front of two of them
(``callvet.cluster.haproxy_config``). In each configuration, in the same run and back to back, wrk drives
``GET /healthz`` (the peer: the same server, the same middleware, no work) and ``POST /v1/decisions``
(authenticated, decided, stored on PostgreSQL by group commit, answered once durable). The ratio is
decisions/s over healthz/s. The replicas' CPU time during each run (from /proc) gives requests per
CPU-second, the per-core figure, and from it the cores 50k decisions/s need (replica CPU only; the
database's own CPU is reported beside it). Every answered decision is checked to be stored.
Written to bench/decision/RESULTS_http.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("CALLVET_BENCH_KEY")
local f = io.open(os.getenv("CALLVET_BENCH_BODY"), "r"); wrk.body = f:read("*a"); f:close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def _postgres_ticks() -> int:
    total = 0
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "comm").read_text().strip().startswith("postgres"):
                    f = (p / "stat").read_text().rsplit(")", 1)[1].split()
                    total += int(f[11]) + int(f[12])
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return total


def _wrk(url: str, seconds: int, connections: int, env: dict[str, str], lua: Path | None,
         pids: list[int]) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if lua is not None:
        cmd += ["-s", str(lua)]
    hz = os.sysconf("SC_CLK_TCK")
    c0, p0 = _cpu_ticks(pids), _postgres_ticks()
    out = subprocess.run([*cmd, url], env=env, capture_output=True, text=True, check=True).stdout
    c1, p1 = _cpu_ticks(pids), _postgres_ticks()
    lat = {k: _ms(v, u) for k, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)", out, re.M)}
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50_ms": lat["50"], "p99_ms": lat["99"], "requests": total,
            "non_2xx": int(bad.group(1)) if bad else 0,
            "replica_cpu_s": (c1 - c0) / hz, "postgres_cpu_s": (p1 - p0) / hz}


def _ms(v: str, unit: str) -> float:
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _wait(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not come up")


def _configuration(n: int, args: argparse.Namespace, work: Path, url: str, key: str,
                   body: Path, lua: Path, started: list[subprocess.Popen[bytes]]) -> dict[str, Any]:
    """Start ``n`` replicas (and HAProxy) into ``started`` -- the caller stops them -- and measure."""
    from callvet.cluster import haproxy_config

    procs: list[subprocess.Popen[bytes]] = started
    ports = [free_port() for _ in range(n)]
    for i, port in enumerate(ports):
        env = {**os.environ, "CALLVET_DATABASE_URL": url, "CALLVET_DATA_DIR": str(work / f"r{n}-{i}"),
               "CALLVET_LOG_LEVEL": "WARNING"}
        procs.append(subprocess.Popen([sys.executable, "-m", "callvet", "serve", "--no-workflow-worker",
                                       "--port", str(port), "--log-level", "warning"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for port in ports:
        _wait(f"http://127.0.0.1:{port}/healthz")
    target = f"http://127.0.0.1:{ports[0]}"
    if n > 1:
        lb = free_port()
        cfg = work / f"haproxy-{n}.cfg"
        cfg.write_text(haproxy_config(lb, [(f"r{i}", p) for i, p in enumerate(ports)]))
        procs.append(subprocess.Popen([shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", str(cfg)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        target = f"http://127.0.0.1:{lb}"
        _wait(f"{target}/healthz")
    env = {**os.environ, "CALLVET_BENCH_KEY": key, "CALLVET_BENCH_BODY": str(body)}
    pids = [p.pid for p in procs[:n]]
    for port in ports:  # warm-up on each replica: models, compiled policies, pools, key cache
        for _ in range(3):
            httpx.post(f"http://127.0.0.1:{port}/v1/decisions", content=body.read_bytes(),
                       headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                       timeout=120).raise_for_status()
        _wait(f"http://127.0.0.1:{port}/readyz")
    if n > 1:
        time.sleep(2.0)  # HAProxy's checks (rise 2 x 0.5 s) put every replica in rotation
    _wrk(f"{target}/v1/decisions", 2, args.connections, env, lua, pids)
    res = {"healthz": _wrk(f"{target}/healthz", args.seconds, args.connections, env, None, pids),
           "decisions": _wrk(f"{target}/v1/decisions", args.seconds, args.connections, env, lua, pids)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--database-url", default=os.environ.get(
        "CALLVET_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = ap.parse_args()
    from callvet.core import auth
    from callvet.core.db import Database
    from sqlalchemy import create_engine, text

    schema = f"bench_http_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{args.database_url}{'&' if '?' in args.database_url else '?'}options=-csearch_path%3D{schema}"
    work = Path(tempfile.mkdtemp(prefix="callvet-bench-http-"))
    db = Database(url)
    db.create_schema()
    key = auth.create_key(db, "robot", "bench-http")
    app = json.loads((ROOT / "docs/contracts/application.example.json").read_text())
    body = work / "body.json"
    body.write_text(json.dumps({"application": app}, ensure_ascii=False))
    lua = work / "decide.lua"
    lua.write_text(LUA)
    results: dict[int, dict[str, Any]] = {}
    load0 = os.getloadavg()
    try:
        for n in args.replicas:
            procs: list[subprocess.Popen[bytes]] = []
            try:
                results[n] = _configuration(n, args, work, url, key, body, lua, procs)
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait(30)
        with db.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM decision_records")).scalar()
    finally:
        db.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    _report(args, results, int(stored or 0), load0, os.getloadavg())


def _report(args: argparse.Namespace, results: dict[int, dict[str, Any]], stored: int,
            load0: tuple[float, ...], load1: tuple[float, ...]) -> None:
    rows = []
    answered = 0
    for n, r in results.items():
        h, d = r["healthz"], r["decisions"]
        answered += d["requests"] - d["non_2xx"]
        per_core_d = d["requests"] / max(d["replica_cpu_s"], 1e-9)
        per_core_h = h["requests"] / max(h["replica_cpu_s"], 1e-9)
        for label, x, pc in (("`GET /healthz` (peer)", h, per_core_h),
                             ("`POST /v1/decisions`, stored", d, per_core_d)):
            pg_ms = x["postgres_cpu_s"] / max(x["requests"], 1) * 1000
            rows.append(f"| {n} | {label} | {x['rps']:,.0f} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | "
                        f"{x['non_2xx']} | {pc:,.0f} | {pg_ms:.2f} |")
        rows.append(f"| {n} | **ratio decisions / healthz** | **{d['rps'] / h['rps']:.2f}** | | | | "
                    f"{per_core_d / per_core_h:.2f} | |")
    best = max(r["decisions"]["requests"] / max(r["decisions"]["replica_cpu_s"], 1e-9)
               for r in results.values())
    lines = [
        "# Stored decisions through HTTP against /healthz (issue 17)",
        "",
        f"`bench/decision/hotpath.py`: wrk 1 thread, {args.connections} connections, {args.seconds} s "
        "per path, "
        f"PostgreSQL (local, fsync on); {os.cpu_count()} CPUs shared with other work; load average "
        f"{load0[0]:.1f} before, {load1[0]:.1f} after. 1 replica: wrk -> `callvet serve`; 2 replicas: wrk -> "
        "HAProxy -> 2 x `callvet serve` (same machine). Per core = requests per CPU-second of the replica "
        "processes during that run; PG ms/req = CPU of every postgres process on the machine per request "
        "(others' sessions included).",
        "",
        "| replicas | path | req/s | p50 ms | p99 ms | non-2xx | per core (req/CPU-s) | PG CPU ms/req |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Stored decisions checked: {stored} rows for {answered} answered 2xx plus warm-up "
        f"({'every answered decision is stored' if stored >= answered else 'MISSING ROWS'}).",
        f"Cores for 50,000 stored decisions/s at the best per-core figure ({best:,.0f}/CPU-s): "
        f"{50_000 / best:.0f} replica cores, plus the database's.",
    ]
    out = ROOT / "bench" / "decision" / "RESULTS_http.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
