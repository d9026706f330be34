"""``callvet cluster``: N API replicas on one PostgreSQL behind HAProxy, on this host, for trying it out.

The supervisor imports the application once and forks each replica from it (as gunicorn's preload
does): a replica -- the first ones, or one restarted after it died -- is serving in the time it takes to
load its models, not the ten seconds of imports a fresh interpreter pays. Each replica is the draining
``callvet serve`` server (:mod:`callvet.api.drain`) with its own data directory (its FAISS index file)
and the shared database. HAProxy balances requests and WebSocket calls by connection (``leastconn``),
checks ``/readyz`` every half second and takes a replica out after two failures -- a dead one, or one
draining on SIGTERM -- and back after two passes. A replica that dies is started again (``--restart``).

The supervisor writes ``cluster.json`` in its run directory (ports and pids, rewritten on every restart)
so that scripts and tests can find and kill replicas. SIGTERM or Ctrl-C drains every replica, then stops
HAProxy. What is deployed in production instead (systemd units, the HAProxy config, a container): deploy/.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from callvet._cli.common import announce
from callvet.core.settings import get_settings

__all__ = ["Cluster", "haproxy_config", "register"]


def haproxy_config(port: int, replicas: list[tuple[str, int]], *, host: str = "127.0.0.1",
                   check_ms: int = 500, fall: int = 2, rise: int = 2) -> str:
    """HAProxy's configuration for ``replicas`` (name, port) on ``host``; deploy/haproxy.cfg is the same
    shape for replicas on several hosts."""
    servers = "\n".join(f"    server {name} {host}:{p} check" for name, p in replicas)
    return f"""global
    maxconn 4000

defaults
    mode http
    option redispatch
    retries 3
    timeout connect 2s
    timeout client 65s
    timeout server 65s
    timeout tunnel 1h
    timeout check 2s

frontend callvet
    bind {host}:{port}
    default_backend replicas

backend replicas
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter {check_ms}ms fastinter {check_ms}ms downinter {check_ms}ms fall {fall} rise {rise}
{servers}
"""


@dataclass
class Replica:
    name: str
    port: int
    data_dir: Path
    pid: int = 0
    starts: int = 0


@dataclass
class Cluster:
    """The supervisor's state: replicas it forked, HAProxy it started."""

    run_dir: Path
    database_url: str
    replicas: list[Replica]
    port: int
    restart: bool = True
    haproxy: subprocess.Popen[bytes] | None = None
    stopping: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def plan(cls, run_dir: Path, database_url: str, n: int, port: int, base_port: int,
             restart: bool = True) -> Cluster:
        reps = [Replica(f"r{i + 1}", base_port + i, run_dir / f"r{i + 1}") for i in range(n)]
        return cls(run_dir, database_url, reps, port, restart)

    # ---- replicas ---------------------------------------------------------------------------------
    def fork(self, rep: Replica) -> None:
        rep.data_dir.mkdir(parents=True, exist_ok=True)
        pid = os.fork()
        if pid == 0:  # the replica
            code = 1
            try:
                _replica_main(rep, self.database_url)
                code = 0
            finally:
                os._exit(code)
        rep.pid = pid
        rep.starts += 1
        self.events.append({"at": time.time(), "replica": rep.name, "pid": pid, "event": "started"})
        self.write_state()

    def reap(self) -> None:
        """Collect replicas that died; start them again unless stopping."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for rep in self.replicas:
                if rep.pid == pid:
                    rep.pid = 0
                    self.events.append({"at": time.time(), "replica": rep.name, "pid": pid,
                                        "event": "exited", "status": status})
                    if self.restart and not self.stopping:
                        self.fork(rep)
                    else:
                        self.write_state()

    # ---- haproxy ----------------------------------------------------------------------------------
    def start_haproxy(self) -> None:
        exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
        cfg = self.run_dir / "haproxy.cfg"
        cfg.write_text(haproxy_config(self.port, [(r.name, r.port) for r in self.replicas]))
        subprocess.run([exe, "-c", "-q", "-f", str(cfg)], check=True)
        with open(self.run_dir / "haproxy.log", "ab") as log:
            self.haproxy = subprocess.Popen([exe, "-db", "-f", str(cfg)], stdout=log,
                                            stderr=subprocess.STDOUT)

    def write_state(self) -> None:
        state = {"port": self.port, "supervisor": os.getpid(),
                 "haproxy": self.haproxy.pid if self.haproxy else 0,
                 "replicas": [{"name": r.name, "port": r.port, "pid": r.pid, "starts": r.starts}
                              for r in self.replicas], "events": self.events[-100:]}
        tmp = self.run_dir / "cluster.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.run_dir / "cluster.json")

    def stop(self, timeout: float) -> None:
        """Drain every replica (SIGTERM), wait for them, then stop HAProxy."""
        self.stopping = True
        for rep in self.replicas:
            if rep.pid:
                _signal(rep.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(r.pid for r in self.replicas) and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.1)
        for rep in self.replicas:
            if rep.pid:
                _signal(rep.pid, signal.SIGKILL)
        self.reap()
        if self.haproxy is not None:
            self.haproxy.terminate()
            self.haproxy.wait(timeout=10)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _replica_main(rep: Replica, database_url: str) -> None:
    """In the forked child: its own data directory and log, then the draining server."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    fd = os.open(rep.data_dir / "serve.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ["CALLVET_DATA_DIR"] = str(rep.data_dir)
    os.environ["CALLVET_DATABASE_URL"] = database_url
    os.environ["CALLVET_REPLICA"] = rep.name
    get_settings.cache_clear()
    from callvet.api.drain import run
    from callvet.core.logs import logging_config

    run("127.0.0.1", rep.port, log_level="info", log_config=logging_config(get_settings().log_format, "INFO"))


def register(app: typer.Typer) -> None:
    @app.command()
    def cluster(
        replicas: int = typer.Option(2, min=1, max=32, help="API replicas"),
        port: int = typer.Option(8080, help="HAProxy's port (what clients use)"),
        base_port: int = typer.Option(8101, help="replica i listens on base-port + i"),
        run_dir: Path = typer.Option(None, help="replica data dirs, logs, haproxy.cfg, cluster.json "
                                                "(default: DATA_DIR/cluster)"),
        restart: bool = typer.Option(True, "--restart/--no-restart", help="start a replica that died again"),
        stop_timeout: float = typer.Option(90.0, help="seconds to wait for replicas to drain on exit"),
    ) -> None:
        """N replicas of the API on one PostgreSQL behind HAProxy, health-checked on /readyz."""
        settings = get_settings()
        announce(settings)
        if not settings.database_url.startswith("postgresql"):
            typer.secho("error [needs_postgresql]: replicas share their state through PostgreSQL; set "
                        "CALLVET_DATABASE_URL=postgresql+psycopg://...", err=True, fg=typer.colors.RED)
            raise typer.Exit(2)
        from callvet._cli.common import open_db

        open_db().dispose()  # migrations once, before the replicas start
        import callvet.api.app  # noqa: F401  (preload: every fork starts with the imports done)

        rd = (run_dir or settings.data_dir / "cluster").resolve()
        rd.mkdir(parents=True, exist_ok=True)
        c = Cluster.plan(rd, settings.database_url, replicas, port, base_port, restart)
        stop = {"now": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
        signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
        for rep in c.replicas:
            c.fork(rep)
        c.start_haproxy()
        c.write_state()
        typer.echo(f"callvet cluster: {replicas} replicas behind http://127.0.0.1:{port} (state {rd}/"
                   "cluster.json)", err=True)
        try:
            while not stop["now"]:
                c.reap()
                if c.haproxy is not None and c.haproxy.poll() is not None:
                    typer.secho("error [haproxy_exited]: see haproxy.log", err=True, fg=typer.colors.RED)
                    break
                time.sleep(0.2)
        finally:
            c.stop(stop_timeout)
        sys.exit(0)
