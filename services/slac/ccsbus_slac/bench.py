"""A namespace bench: N hosts, each in its own network namespace with `eth1`, on one virtual medium.

Each host gets a veth pair: `eth1` inside its namespace (IPv6 link-local, no DAD delay) and the
medium end in the root namespace, where `ccsbus vmodem` attaches one emulated modem to it. Names
carry a per-run tag so parallel runs do not collide; `close()` removes everything it created.

    with NetnsBench(2) as bench:
        vm = bench.start_vmodem(atten=[5, 10])
        evse = bench.spawn(0, [sys.executable, "-m", "ccsbus_slac.agent", "--role", "EVSE"])
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from .mme import parse_mac


class BenchError(RuntimeError):
    pass


# veth leaves transport checksums to "the hardware" (CHECKSUM_PARTIAL); frames that cross the medium
# through packet sockets would arrive with half-done checksums and be dropped. Turning TX checksum
# offload off on the host's eth1 makes the kernel finish them in software (ethtool -K eth1 tx off).
NO_TX_CSUM = """
import ctypes, fcntl, socket, struct, sys
SIOCETHTOOL, ETHTOOL_STXCSUM = 0x8946, 0x17
value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, 0))
ifreq = struct.pack("16sP", sys.argv[1].encode(), ctypes.addressof(value)).ljust(40, b"\\0")
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    fcntl.ioctl(s, SIOCETHTOOL, ifreq)
"""


def unavailable_reason() -> str | None:
    """Why the bench cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` tool (iproute2) is not installed"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise BenchError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


@dataclass
class Host:
    index: int
    namespace: str
    medium_if: str
    interface: str = "eth1"
    mac: bytes = b""


class Process:
    """A child process that speaks JSON lines on stdout (agent or vmodem)."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, bufsize=1, env=env)
        self.lines: list[str] = []
        self._buffer = b""

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def readline(self, timeout: float) -> str | None:
        """One line of stdout within `timeout` (raw fd reads: a buffered reader would hide lines from select)."""
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\n", 1)
        line = raw.decode("utf-8", "replace")
        self.lines.append(line)
        return line

    def wait_for(self, predicate: Any, timeout: float) -> dict[str, Any]:
        """The next JSON event satisfying `predicate`; BenchError on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"timeout waiting in {self.argv[-6:]}; seen: {self.lines[-5:]}; "
                                 f"stderr: {self.stderr_tail()}")
            line = self.readline(left)
            if line is None:
                if self.popen.poll() is not None:
                    raise BenchError(f"{self.argv[-6:]} exited {self.popen.returncode}: {self.stderr_tail()}")
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if predicate(event):
                return dict(event)

    def wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        return self.wait_for(lambda e: e.get("event") == name, timeout)

    def stderr_tail(self) -> str:
        if self.popen.poll() is None or self.popen.stderr is None:
            return ""
        return self.popen.stderr.read()[-2000:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(3)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(3)
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@dataclass
class NetnsBench:
    count: int
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    hosts: list[Host] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)

    def __enter__(self) -> NetnsBench:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def open(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise BenchError(reason)
        try:
            for i in range(self.count):
                self._make_host(i)
        except BaseException:
            self.close()
            raise

    def _make_host(self, i: int) -> Host:
        ns, medium, temp = f"ccsb{self.tag}{i}", f"vm{self.tag}{i}", f"vh{self.tag}{i}"
        host = Host(i, ns, medium)
        _ip("netns", "add", ns)
        self.hosts.append(host)  # registered before the links so close() removes partial hosts too
        _ip("link", "add", medium, "type", "veth", "peer", "name", temp)
        _ip("link", "set", temp, "netns", ns)
        _ip("-n", ns, "link", "set", temp, "name", host.interface)
        _ip("-n", ns, "link", "set", "lo", "up")
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                        f"net.ipv6.conf.{host.interface}.accept_dad=0"], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", NO_TX_CSUM, host.interface],
                       check=True, capture_output=True)
        _ip("-n", ns, "link", "set", host.interface, "up")
        # the medium end is a wire, not a host: no addresses, no router solicitations of its own
        disable = Path(f"/proc/sys/net/ipv6/conf/{medium}/disable_ipv6")
        if disable.exists():
            disable.write_text("1")
        _ip("link", "set", medium, "up")
        out = subprocess.run(["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{host.interface}/address"],
                             capture_output=True, text=True, check=True).stdout.strip()
        host.mac = parse_mac(out)
        return host

    def close(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        for host in self.hosts:
            _ip("link", "del", host.medium_if, check=False)
            _ip("netns", "del", host.namespace, check=False)
        self.hosts.clear()

    # ---- processes
    def spawn(self, index: int | None, argv: list[str]) -> Process:
        """Run argv inside host `index`'s namespace (None: in the root namespace)."""
        full = argv if index is None else ["ip", "netns", "exec", self.hosts[index].namespace, *argv]
        proc = Process(full, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.processes.append(proc)
        return proc

    def start_vmodem(self, atten: list[int] | None = None, noprofile: set[int] | None = None,
                     join_delay: float = 0.05) -> Process:
        ports = []
        for host in self.hosts:
            spec = f"iface:{host.medium_if},atten={(atten or [10] * self.count)[host.index]}"
            if noprofile and host.index in noprofile:
                spec += ",noprofile"
            ports += ["--port", spec]
        proc = self.spawn(None, [sys.executable, "-m", "ccsbus_slac.vmodem", *ports,
                                 "--join-delay", str(join_delay), "--log-level", "WARNING"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = proc.readline(deadline - time.monotonic())
            if line and line.startswith("vmodem ready"):
                return proc
            if line is None and proc.popen.poll() is not None:
                break
        raise BenchError(f"vmodem did not start: {proc.stderr_tail()}")

    def agent(self, index: int, role: str, *settings: str, start: bool = False) -> Process:
        argv = [sys.executable, "-m", "ccsbus_slac.agent", "--role", role, "--interface", self.hosts[index].interface]
        for item in settings:
            argv += ["--set", item]
        if start:
            argv.append("--start")
        return self.spawn(index, argv)
