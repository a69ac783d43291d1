"""The peer stack for interop tests and benches: iso15118 (SECC and EVCC) in its own venv.

Its pins (pydantic 1, marshmallow < 4, a Java EXI codec through py4j) clash with ours, so it lives
in `<repo>/.venv-peer`, created on first use. A veth pair between two network namespaces gives
both sides a real link with IPv6 link-local addresses and multicast, as a PLC link would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PEER_VENV = REPO / ".venv-peer"
PEER_PYTHON = PEER_VENV / "bin" / "python"
PEER_PACKAGES = ["iso15118", "marshmallow<4", "aiofile"]


class PeerUnavailable(RuntimeError):
    """iso15118 (or Java, or network namespaces) is not available here."""


def ensure_peer_venv() -> Path:
    """The peer venv's python, installing iso15118 into it on first use."""
    if PEER_PYTHON.exists():
        probe = subprocess.run([str(PEER_PYTHON), "-c", "import iso15118.evcc.main"],
                               capture_output=True, timeout=120)
        if probe.returncode == 0:
            return PEER_PYTHON
    if shutil.which("java") is None:
        raise PeerUnavailable("iso15118 needs Java (its EXI codec is a jar); java is not installed")
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True, timeout=300)
    (PEER_VENV / ".gitignore").write_text("*\n")
    result = subprocess.run([str(PEER_PYTHON), "-m", "pip", "install", "-q", *PEER_PACKAGES],
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise PeerUnavailable(f"pip install iso15118 failed: {result.stderr[-500:]}")
    return PEER_PYTHON


def peer_package_dir() -> Path:
    out = subprocess.run([str(PEER_PYTHON), "-c",
                          "import iso15118, os; print(os.path.dirname(iso15118.__file__))"],
                         capture_output=True, text=True, check=True, timeout=120)
    return Path(out.stdout.strip())


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass
class VethPair:
    """Two namespaces joined by a veth pair: `evse_ns`/`evse_if` and `pev_ns`/`pev_if`."""

    tag: str

    @property
    def evse_ns(self) -> str:
        return f"ccs-e-{self.tag}"

    @property
    def pev_ns(self) -> str:
        return f"ccs-p-{self.tag}"

    evse_if: str = "veth-evse"
    pev_if: str = "veth-pev"

    def create(self) -> None:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise PeerUnavailable("network namespaces need root and iproute2")
        self.delete()
        for ns in (self.evse_ns, self.pev_ns):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        tmp_e, tmp_p = f"ve{self.tag}"[:15], f"vp{self.tag}"[:15]
        _ip("link", "add", tmp_e, "type", "veth", "peer", "name", tmp_p)
        for tmp, ns, name in ((tmp_e, self.evse_ns, self.evse_if), (tmp_p, self.pev_ns, self.pev_if)):
            _ip("link", "set", tmp, "netns", ns)
            _ip("-n", ns, "link", "set", tmp, "name", name)
            # no duplicate address detection: the link-local address is usable at once
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                            f"net.ipv6.conf.{name}.accept_dad=0"], check=True, timeout=30)
            _ip("-n", ns, "link", "set", name, "up")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.link_local(self.evse_ns, self.evse_if) and self.link_local(self.pev_ns, self.pev_if):
                return
            time.sleep(0.05)
        raise PeerUnavailable("the veth pair got no IPv6 link-local addresses")

    @staticmethod
    def link_local(ns: str, ifname: str) -> str | None:
        out = subprocess.run(["ip", "-n", ns, "-6", "addr", "show", "dev", ifname, "scope", "link"],
                             capture_output=True, text=True, timeout=30).stdout
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("inet6 ") and "tentative" not in line:
                return line.split()[1].split("/")[0]
        return None

    def delete(self) -> None:
        for ns in (self.evse_ns, self.pev_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)

    def exec_args(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]
