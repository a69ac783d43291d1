"""How HomePlug frames reach the modem: raw Ethernet (pcap) or a UDP tunnel to the virtual modem.

`Link` is what the driver needs: our MAC, `send(frame)` and `await recv()`. `PcapLink` captures with
libpcap (BPF filter on ethertype 0x88E1) and injects with pcap as well; `UdpLink` carries each
Ethernet frame as one UDP datagram to `ccsbus vmodem` (no root needed, for laptops and the simulation).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any, Protocol

from .mme import ETHERTYPE_HPAV, parse_mac

BPF_HOMEPLUG = f"ether proto 0x{ETHERTYPE_HPAV:04x}"
QUEUE_MAX = 4096
REGISTER = b"\x00"


class LinkError(OSError):
    """The link cannot be opened (no such interface, no permission, nothing listening)."""


class Link(Protocol):
    mac: bytes
    description: str

    async def open(self) -> None: ...

    def send(self, frame: bytes) -> None: ...

    async def recv(self) -> bytes: ...

    def close(self) -> None: ...


def interface_mac(interface: str) -> bytes:
    path = Path("/sys/class/net") / interface / "address"
    try:
        return parse_mac(path.read_text().strip())
    except FileNotFoundError:
        raise LinkError(f"network interface {interface!r} does not exist (check slac.interface)") from None


def random_mac() -> bytes:
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFC) | 0x02  # locally administered, unicast
    return bytes(raw)


class _Queue:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_MAX)

    def put(self, frame: bytes) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a flood must not grow memory without bound
            self.queue.put_nowait(frame)


class PcapLink:
    """Raw Ethernet on a real interface: libpcap receive with a BPF filter, pcap inject to send."""

    def __init__(self, interface: str, bpf: str = BPF_HOMEPLUG, promiscuous: bool = True) -> None:
        self.interface = interface
        self.bpf = bpf
        self.promiscuous = promiscuous
        self.mac = interface_mac(interface)
        self.description = f"pcap:{interface}"
        self._pcap: Any = None
        self._rx = _Queue()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        import pcap  # type: ignore[import-not-found,unused-ignore]

        try:
            handle = pcap.pcap(name=self.interface, snaplen=2048, promisc=self.promiscuous, immediate=True,
                               timeout_ms=10)
            handle.setfilter(self.bpf)
            handle.setnonblock(True)
        except OSError as exc:
            raise LinkError(f"cannot capture on {self.interface!r}: {exc} (root or CAP_NET_RAW needed)") from exc
        with contextlib.suppress(AttributeError, OSError):
            handle.setdirection(pcap.PCAP_D_IN)  # our own frames are not input
        self._pcap = handle
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(handle.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            packets = self._pcap.readpkts()
        except OSError:
            return
        for _ts, data in packets:
            frame = bytes(data)
            if frame[6:12] != self.mac:
                self._rx.put(frame)

    def send(self, frame: bytes) -> None:
        if self._pcap is None:
            raise LinkError("link is not open")
        self._pcap.sendpacket(frame)

    async def recv(self) -> bytes:
        return await self._rx.queue.get()

    def close(self) -> None:
        if self._pcap is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._pcap.fileno())
            with contextlib.suppress(Exception):
                self._pcap.close()
        self._pcap = None


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, sink: _Queue) -> None:
        self.sink = sink

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data:
            self.sink.put(data)  # runts go up too: the driver reports them

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the virtual modem is not running: the discovery timeout reports it
        pass


class UdpLink:
    """Ethernet frames tunnelled in UDP datagrams to one port of `ccsbus vmodem`."""

    def __init__(self, host: str, port: int, mac: bytes | None = None, ethertype: int | None = ETHERTYPE_HPAV) -> None:
        self.host, self.port = host, port
        self.mac = mac or random_mac()
        self.ethertype = ethertype
        self.description = f"udp:{host}:{port}"
        self._rx = _Queue()
        self._transport: asyncio.DatagramTransport | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self._rx), remote_addr=(self.host, self.port))
        except OSError as exc:
            raise LinkError(f"cannot reach the virtual modem at {self.host}:{self.port}: {exc}") from exc
        self._transport = transport
        # one byte registers us with the modem port (too short to be a frame; asyncio drops empty datagrams)
        transport.sendto(REGISTER)

    def send(self, frame: bytes) -> None:
        if self._transport is None:
            raise LinkError("link is not open")
        self._transport.sendto(frame)

    async def recv(self) -> bytes:
        while True:
            frame = await self._rx.queue.get()
            if self.ethertype is None or len(frame) < 14 or int.from_bytes(frame[12:14], "big") == self.ethertype:
                return frame

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None
