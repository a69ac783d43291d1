"""Our EVCC against the iso15118 (Josev) SECC over a veth pair between two network namespaces.

The peer runs from its own virtualenv (`.venv-peer`, created on first use under a lock shared with
the SECC's interop test) inside namespace A on one veth end; our car side runs inside namespace B
on the other end, with SDP to ff02::1 and IPv6 link-local TCP, up to SessionStop.

Needs root (ip netns), Java (the peer's EXI codec) and the peer package; skips naming what is
missing. The peer's simulated charger reports a constant EVSEPresentVoltage of 1 V, so the car
side runs with a 10 V battery to let PreCharge end as it would with a real charger.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
PEER_VENV = REPO / ".venv-peer"
PEER_LOCK = Path("/tmp/ccsbus-venv-peer.lock")
PEER_PROTOCOLS = {"din": "DIN_SPEC_70121", "iso2": "ISO_15118_2"}

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _helpers() -> Any:
    import importlib.util

    name = "ccsbus_v2g_tests_evcc_helpers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("evcc_helpers.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def peer_python() -> Path:
    """The peer venv's python, creating the venv on first use (one creator at a time)."""
    python = PEER_VENV / "bin" / "python"
    with PEER_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ok = python.exists() and subprocess.run(
            [str(python), "-c", "import iso15118, aiofile"], capture_output=True).returncode == 0
        if not ok:
            if not python.exists():
                subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
                (PEER_VENV / ".gitignore").write_text("*\n")
            pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "iso15118",
                                  "marshmallow<4", "aiofile"], capture_output=True, text=True)
            if pip.returncode != 0:
                pytest.skip(f"the iso15118 peer could not be installed: {pip.stderr[-300:]}")
    return python


def sh(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True)


@pytest.fixture
def netns_pair() -> Iterator[tuple[str, str, str, str]]:
    """(evse namespace, evse interface, pev namespace, pev interface), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root for ip netns / veth")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed")
    tag = uuid.uuid4().hex[:6]
    evse, pev = f"ccs-e-{tag}", f"ccs-p-{tag}"
    e_if, p_if = f"ve{tag}", f"vp{tag}"
    try:
        sh("ip", "netns", "add", evse)
        sh("ip", "netns", "add", pev)
        sh("ip", "link", "add", e_if, "type", "veth", "peer", "name", p_if)
        sh("ip", "link", "set", e_if, "netns", evse)
        sh("ip", "link", "set", p_if, "netns", pev)
        for ns, ifname in ((evse, e_if), (pev, p_if)):
            # no duplicate address detection: the link-local address is usable at once
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
               "net.ipv6.conf.default.accept_dad=0", f"net.ipv6.conf.{ifname}.accept_dad=0")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", ifname, "up")
        yield evse, e_if, pev, p_if
    finally:
        for ns in (evse, pev):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def start_peer_secc(python: Path, ns: str, ifname: str, protocol: str,
                    workdir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NETWORK_INTERFACE": ifname, "PROTOCOLS": PEER_PROTOCOLS[protocol],
           "AUTH_MODES": "EIM", "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
    log = (workdir / "peer-secc.log").open("wb")
    proc = subprocess.Popen(["ip", "netns", "exec", ns, str(python), "-m", "iso15118.secc.main"],
                            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = (workdir / "peer-secc.log").read_text(errors="replace")
        if "UDP server started" in text:
            return proc
        if proc.poll() is not None:
            pytest.fail(f"the peer SECC exited: {text[-1500:]}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail("the peer SECC did not start its SDP server within 60 s")


@pytest.mark.parametrize("protocol", ["din", "iso2"])
def test_our_evcc_against_the_iso15118_secc(netns_pair: tuple[str, str, str, str],
                                             protocol: str, tmp_path: Path) -> None:
    if shutil.which("java") is None:
        pytest.skip("java is not installed (the iso15118 peer's EXI codec needs it)")
    python = peer_python()
    evse_ns, evse_if, pev_ns, pev_if = netns_pair
    peer = start_peer_secc(python, evse_ns, evse_if, protocol, tmp_path)
    out = tmp_path / "evcc-result.json"
    try:
        run = subprocess.run(
            ["ip", "netns", "exec", pev_ns, sys.executable,
             str(Path(__file__).with_name("evcc_netns_driver.py")),
             "--interface", pev_if, "--protocol", protocol, "--out", str(out)],
            capture_output=True, text=True, timeout=120, cwd=REPO)
    finally:
        os.killpg(peer.pid, 15)
        try:
            peer.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(peer.pid, 9)
            peer.wait()
    peer_log = (tmp_path / "peer-secc.log").read_text(errors="replace")
    assert out.exists(), f"driver wrote nothing: {run.stderr[-2000:]}"
    result = json.loads(out.read_text())
    end = result["end"]
    assert result["error"] is None, (result["error"], run.stderr[-2000:], peer_log[-2000:])
    assert end["state"] == "Finished", (
        f"car ended {end['state']}: {end['last_error']}\n--- peer SECC log:\n{peer_log[-3000:]}")
    assert end["protocol"] == protocol
    events = [tuple(e) for e in result["events"]]
    h = _helpers()
    assert h.check_shutdown_order(events) == ""
    tx = [json.loads(p)["name"] for t, p in events if t == "v2g/message"
          and json.loads(p)["direction"] == "tx"]
    for name in ("SessionSetupReq", "CableCheckReq", "PreChargeReq", "PowerDeliveryReq",
                 "CurrentDemandReq", "WeldingDetectionReq", "SessionStopReq"):
        assert name in tx, (name, tx)
    assert "SessionStopReq" in peer_log or "SessionStop" in peer_log
