"""`ccsbus sim --role-only`: each side alone on a real interface, the other side a real peer.

Two veth pairs joined by `ccsbus vmodem` in interface mode stand in for a car and a charger with their
PLC modems. The car side lives in its own network namespace (two link-local stacks in one namespace
would answer each other through loopback). `--role-only evse` runs on the charger's veth, `--role-only
pev` inside the namespace on the car's; each uses its own embedded broker, as two separate machines
would. Needs root (namespaces, veth pairs, raw sockets).
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUFFIX = str(os.getpid() % 100000)
NETNS = f"ccsbus-pev-{SUFFIX}"
EVSE_IF, EVSE_MEDIUM = f"cse{SUFFIX}", f"cse{SUFFIX}m"
PEV_IF, PEV_MEDIUM = f"csp{SUFFIX}", f"csp{SUFFIX}m"
SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17


def tx_checksum_off(ifname: str) -> None:
    """Have the kernel fill in checksums before frames leave a veth.

    With offload on, a frame the virtual modem reads from the medium end still has a partial UDP/TCP
    checksum, and the far host drops it once the modem writes it out there.
    """
    value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, 0))
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)


def _run(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", "netns", "exec", netns, *args] if netns else list(args)
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture
def two_machines(tmp_path: Path) -> Iterator[None]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for network namespaces and veth pairs")
    _run("ip", "netns", "add", NETNS)
    log = (tmp_path / "vmodem.log").open("wb")
    vmodem: subprocess.Popen[bytes] | None = None
    try:
        _run("ip", "link", "add", EVSE_IF, "type", "veth", "peer", "name", EVSE_MEDIUM)
        _run("ip", "link", "add", PEV_IF, "type", "veth", "peer", "name", PEV_MEDIUM)
        tx_checksum_off(PEV_IF)  # the setting moves with the interface into the namespace
        _run("ip", "link", "set", PEV_IF, "netns", NETNS)
        for name in (EVSE_IF, EVSE_MEDIUM, PEV_MEDIUM):
            _run("sysctl", "-qw", f"net.ipv6.conf.{name}.accept_dad=0")
            _run("ip", "link", "set", name, "up")
            tx_checksum_off(name)
        _run("sysctl", "-qw", f"net.ipv6.conf.{PEV_IF}.accept_dad=0", netns=NETNS)
        _run("ip", "link", "set", "lo", "up", netns=NETNS)
        _run("ip", "link", "set", PEV_IF, "up", netns=NETNS)
        vmodem = subprocess.Popen([sys.executable, "-m", "ccsbus", "vmodem", "--port", f"iface:{EVSE_MEDIUM}",
                                   "--port", f"iface:{PEV_MEDIUM}"], stdout=log, stderr=subprocess.STDOUT)
        time.sleep(1.0)
        yield
    finally:
        if vmodem is not None:
            vmodem.terminate()
            vmodem.wait(5)
        log.close()
        subprocess.run(["ip", "link", "del", EVSE_IF], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", PEV_MEDIUM], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", NETNS], check=False, capture_output=True)


@pytest.mark.root
def test_each_side_alone_against_the_other(tmp_path: Path, two_machines: None) -> None:
    common = ["--plain", "--timeout", "60", "--speed", "400", "--start-soc", "60", "--target-soc", "62"]
    pev = subprocess.Popen(["ip", "netns", "exec", NETNS, sys.executable, "-m", "ccsbus", "sim",
                            "--role-only", "pev", "--interface", PEV_IF, "--out", str(tmp_path / "pev"),
                            *common], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
    evse = subprocess.run([sys.executable, "-m", "ccsbus", "sim", "--role-only", "evse", "--interface",
                           EVSE_IF, "--out", str(tmp_path / "evse"), *common],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    pev.communicate(timeout=120)
    evse_log = json.loads((tmp_path / "evse" / "session.json").read_text())
    pev_log = json.loads((tmp_path / "pev" / "session.json").read_text())
    assert evse.returncode == 0, evse_log["reason"]
    assert pev.returncode == 0, pev_log["reason"]
    for log in (evse_log, pev_log):
        seen = [p["phase"] for p in log["phases"]]
        assert seen.index("slac") < seen.index("sdp") < seen.index("cable-check") \
            < seen.index("charging") < seen.index("welding-detection") < seen.index("session-stop")
        assert log["options"]["role_only"] in ("EVSE", "PEV")
    assert pev_log["protocol"] == evse_log["protocol"] == "din"
