"""`ccsbus sim --role-only`: each side alone on a real interface, the other side a real peer.

Two veth pairs joined by `ccsbus vmodem` in interface mode stand in for a car and a charger with their
PLC modems: `--role-only evse --interface ccsA` is the charger, `--role-only pev --interface ccsB` its
peer. Needs root (veth pairs, raw sockets).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PAIRS = (("ccsbusA", "ccsbusAm"), ("ccsbusB", "ccsbusBm"))


@pytest.fixture
def veth_modem(tmp_path: Path) -> Iterator[None]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for veth pairs")
    for host, medium in PAIRS:
        subprocess.run(["ip", "link", "add", host, "type", "veth", "peer", "name", medium], check=True)
        for name in (host, medium):
            subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{name}.accept_dad=0"], check=False)
            subprocess.run(["ip", "link", "set", name, "up"], check=True)
    log = (tmp_path / "vmodem.log").open("wb")
    vmodem = subprocess.Popen([sys.executable, "-m", "ccsbus", "vmodem", "--port", f"iface:{PAIRS[0][1]}",
                               "--port", f"iface:{PAIRS[1][1]}"], stdout=log, stderr=subprocess.STDOUT)
    time.sleep(1.0)
    try:
        yield
    finally:
        vmodem.terminate()
        vmodem.wait(5)
        log.close()
        for host, _ in PAIRS:
            subprocess.run(["ip", "link", "del", host], check=False)


@pytest.mark.root
@pytest.mark.xfail(reason="the SECC does not answer SDP requests that reach it on a veth interface "
                          "(v2g service; the requests arrive, no response leaves)", strict=False)
def test_each_side_alone_against_the_other(tmp_path: Path, veth_modem: None, mosquitto: Any) -> None:
    common = ["--broker", mosquitto.url, "--plain", "--timeout", "60", "--speed", "400",
              "--start-soc", "60", "--target-soc", "62"]
    pev = subprocess.Popen([sys.executable, "-m", "ccsbus", "sim", "--role-only", "pev", "--interface",
                            PAIRS[1][0], "--out", str(tmp_path / "pev"), *common],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
    evse = subprocess.run([sys.executable, "-m", "ccsbus", "sim", "--role-only", "evse", "--interface",
                           PAIRS[0][0], "--out", str(tmp_path / "evse"), *common],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    pev.communicate(timeout=120)
    evse_log = json.loads((tmp_path / "evse" / "session.json").read_text())
    pev_log = json.loads((tmp_path / "pev" / "session.json").read_text())
    assert pev.returncode == 0, pev_log["reason"]
    assert evse.returncode == 0, evse_log["reason"]
    for log in (evse_log, pev_log):
        seen = [p["phase"] for p in log["phases"]]
        assert seen.index("slac") < seen.index("cable-check") < seen.index("charging") \
            < seen.index("session-stop")
