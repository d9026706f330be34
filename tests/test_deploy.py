"""The deployment files of deploy/ hold: HAProxy accepts its config (and the one ``callvet cluster``
writes, which has the same shape), systemd accepts the units with this checkout's ``callvet``, and the
example Kubernetes manifest probes /healthz and /readyz on the port the API listens on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from callvet.cluster import haproxy_config
from callvet.core.settings import Settings

DEPLOY = Path(__file__).parents[1] / "deploy"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def _directives(cfg: str) -> set[str]:
    """The config's directives, without comments, addresses and servers (which differ by site)."""
    out = set()
    for line in cfg.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith(("bind", "server")):
            out.add(re.sub(r"\s+", " ", line))
    return out


def test_haproxy_accepts_the_deploy_config_and_the_cluster_config(tmp_path: Path) -> None:
    subprocess.run([HAPROXY, "-c", "-q", "-f", str(DEPLOY / "haproxy.cfg")], check=True)
    generated = tmp_path / "cluster.cfg"
    generated.write_text(haproxy_config(18080, [("r1", 18101), ("r2", 18102)]))
    subprocess.run([HAPROXY, "-c", "-q", "-f", str(generated)], check=True)
    assert _directives(generated.read_text()) == _directives((DEPLOY / "haproxy.cfg").read_text())
    broken = tmp_path / "broken.cfg"
    broken.write_text(generated.read_text().replace("balance leastconn", "balance nonsense"))
    assert subprocess.run([HAPROXY, "-c", "-q", "-f", str(broken)], capture_output=True).returncode != 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    callvet = Path(sys.executable).with_name("callvet")
    for unit in ("callvet-api@.service", "callvet-worker.service"):
        text = (DEPLOY / "systemd" / unit).read_text()
        exe = re.search(r"^ExecStart=(\S+)", text, re.M).group(1)  # type: ignore[union-attr]
        assert exe.endswith("/.venv/bin/callvet"), exe  # the install target, never read by the suite
        (tmp_path / unit).write_text(text.replace(exe, str(callvet)))
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "callvet-api@8101.service"),
                        str(tmp_path / "callvet-worker.service")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    api = (DEPLOY / "systemd" / "callvet-api@.service").read_text()
    stop = int(re.search(r"TimeoutStopSec=(\d+)", api).group(1))  # type: ignore[union-attr]
    defaults = Settings.model_fields
    assert stop > defaults["drain_grace_s"].default + defaults["drain_timeout_s"].default  # drain fits
    assert "--no-workflow-worker" in api  # the worker is its own unit


def test_the_manifest_probes_what_the_api_serves() -> None:
    manifest = (DEPLOY / "k8s" / "callvet.yaml").read_text()
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(manifest) if d}
    pod = docs["Deployment", "callvet-api"]["spec"]["template"]["spec"]
    api = pod["containers"][0]
    port = int(api["args"][api["args"].index("--port") + 1])
    assert api["ports"][0]["containerPort"] == port
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: float(e["value"]) for e in api["env"]}
    drain = env["CALLVET_DRAIN_GRACE_S"] + env["CALLVET_DRAIN_TIMEOUT_S"]
    assert pod["terminationGracePeriodSeconds"] > drain
    worker = docs["Deployment", "callvet-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert "workflow" in worker["args"]
    assert docs["Service", "callvet-api"]["spec"]["ports"][0]["targetPort"] == "http"


def test_the_container_serves_without_torch() -> None:
    stages = re.split(r"^FROM ", (DEPLOY / "Containerfile").read_text(), flags=re.M)[1:]
    assert [s.split()[2] for s in stages] == ["build", "serve"]
    build, serve = stages
    assert "torch" in build and "models build" in build
    assert "torch" not in serve and '".[build]"' not in serve
    assert "COPY --from=build /opt/callvet/models" in serve and "/healthz" in serve
