"""A virtual HomePlug Green PHY medium: N emulated QCA7000 modems on one simulated cable.

Each port is one modem with its host behind it. Toward its host a port behaves like a QCA7000: it
answers VS_SW_VER, CM_SET_KEY, CM_GET_KEY, VS_PL_LNK_STATUS and VS_RS_DEV, and for every
CM_MNBC_SOUND.IND heard on the cable it hands the sound plus a CM_ATTEN_PROFILE.IND (configurable
attenuation) to its host. SLAC messages cross the cable between any modems, as between unmatched
modems on a real cable (unicast ones too, as a listen-mode station sees them); everything else
(IPv6, other MMEs) reaches only modems that share the NID, so V2G traffic flows only after a match.

Ports: `udp:HOST:PORT` (the host's `UdpLink` tunnels frames in datagrams; no root needed) or
`iface:NAME` (AF_PACKET on the medium end of a veth pair whose other end is the host's interface).
Options follow with commas: `atten=DB` (path attenuation = sender's + receiver's), `noprofile`
(behave like an AR7420, no CM_ATTEN_PROFILE.IND), `mac=..` (modem MAC).

    ccsbus vmodem --port udp:127.0.0.1:17001 --port udp:127.0.0.1:17002,atten=12
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ccsbus.log import get_logger, setup_logging

from .mme import (
    BROADCAST,
    LINK_DOWN,
    LINK_UP,
    LOCAL_MODEM,
    SLAC_GROUPS,
    AttenProfileInd,
    Frame,
    GetKeyCnf,
    GetKeyReq,
    LinkStatusCnf,
    LinkStatusReq,
    MMBase,
    MnbcSoundInd,
    ParseError,
    RsDevCnf,
    RsDevReq,
    SetKeyCnf,
    SetKeyReq,
    SwVerCnf,
    SwVerReq,
    mac_text,
    parse_frame,
    parse_mac,
    vendor_frame,
)
from .nid import nid_from_nmk, random_nmk

log = get_logger("vmodem")

FIRMWARE = "MAC-QCA7000-ccsbus-vmodem-1.0"
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SLAC_BASES = {MMBase.CM_SLAC_PARM, MMBase.CM_START_ATTEN_CHAR, MMBase.CM_ATTEN_CHAR, MMBase.CM_MNBC_SOUND,
              MMBase.CM_VALIDATE, MMBase.CM_SLAC_MATCH, MMBase.CM_SLAC_USER_DATA}
MODEM_REQUESTS = (SwVerReq, SetKeyReq, GetKeyReq, LinkStatusReq, RsDevReq)


@dataclass
class PortConfig:
    kind: str  # "udp" or "iface"
    address: str  # "host:port" or interface name
    atten: int = 10
    profile: bool = True
    mac: bytes | None = None

    @classmethod
    def parse(cls, spec: str) -> PortConfig:
        head, *opts = spec.split(",")
        kind, _, address = head.partition(":")
        if kind not in ("udp", "iface") or not address:
            raise ValueError(f"bad port {spec!r}: use udp:HOST:PORT or iface:NAME, then ,atten=N ,noprofile ,mac=..")
        cfg = cls(kind=kind, address=address)
        for opt in opts:
            key, _, value = opt.partition("=")
            if key == "atten":
                cfg.atten = int(value)
            elif key == "noprofile":
                cfg.profile = False
            elif key == "mac":
                cfg.mac = parse_mac(value)
            else:
                raise ValueError(f"bad port option {opt!r} in {spec!r}")
        return cfg


@dataclass
class Modem:
    """The state of one emulated modem."""

    index: int
    mac: bytes
    atten: int
    profile: bool
    nmk: bytes = b""
    nid: bytes = b""
    keyed_at: float = 0.0
    hosts: set[bytes] = field(default_factory=set)

    def new_key(self, nmk: bytes, nid: bytes, now: float) -> None:
        self.nmk, self.nid, self.keyed_at = nmk, nid, now

    def host(self) -> bytes:
        return next(iter(self.hosts)) if self.hosts else BROADCAST


Delivery = tuple[int, bytes]  # (port index, Ethernet frame toward that port's host)


class Medium:
    """Pure forwarding logic: a frame from the host of port i -> frames to the hosts of ports."""

    def __init__(self, configs: list[PortConfig], join_delay: float = 0.05,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.join_delay = join_delay
        self.modems: list[Modem] = []
        for i, cfg in enumerate(configs):
            mac = cfg.mac or bytes([0x00, 0xB0, 0x52, os.getpid() & 0xFF, (i >> 8) & 0xFF, (i + 2) & 0xFF])
            modem = Modem(index=i, mac=mac, atten=cfg.atten, profile=cfg.profile)
            nmk = random_nmk()
            modem.new_key(nmk, nid_from_nmk(nmk), 0.0)
            self.modems.append(modem)

    # ---- queries
    def same_network(self, a: Modem, b: Modem) -> bool:
        return a is not b and a.nmk == b.nmk and a.nid == b.nid

    def link_up(self, modem: Modem) -> bool:
        now = self.clock()
        return any(self.same_network(modem, other)
                   and now - max(modem.keyed_at, other.keyed_at) >= self.join_delay
                   for other in self.modems)

    def _owner(self, mac: bytes, candidates: list[Modem]) -> list[Modem]:
        owners = [m for m in candidates if mac in m.hosts]
        return owners or candidates

    # ---- forwarding
    def from_host(self, index: int, data: bytes) -> list[Delivery]:
        if len(data) < 14:
            return []
        modem = self.modems[index]
        dst, src = data[0:6], data[6:12]
        if src != BROADCAST and not src[0] & 1:
            modem.hosts.add(bytes(src))
        if data[12:14] != b"\x88\xe1":
            return self._data(modem, data, dst)
        try:
            frame = parse_frame(data)
        except ParseError as exc:
            log.info("vmodem frame dropped", port=index, why=str(exc))
            return []
        if isinstance(frame.body, MODEM_REQUESTS) and (dst in (LOCAL_MODEM, modem.mac, BROADCAST)):
            return self._management(modem, frame)
        if frame.mmtype & ~0x3 in SLAC_BASES:
            return self._slac(modem, frame, data)
        return self._data(modem, data, dst)

    def _reply(self, modem: Modem, frame: Frame, body: Any, vendor: bool = False) -> Delivery:
        out = vendor_frame(frame.src, modem.mac, body) if vendor else Frame(dst=frame.src, src=modem.mac, body=body)
        return (modem.index, out.pack())

    def _management(self, modem: Modem, frame: Frame) -> list[Delivery]:
        body = frame.body
        match body:
            case SwVerReq():
                return [self._reply(modem, frame, SwVerCnf(version=FIRMWARE), vendor=True)]
            case SetKeyReq():
                modem.new_key(body.new_key, body.nid, self.clock())
                log.info("vmodem key set", port=modem.index, nid=body.nid.hex())
                cnf = SetKeyCnf(result=0, my_nonce=(0x11111111 * (modem.index + 1)) & 0xFFFFFFFF,
                                your_nonce=body.my_nonce, pid=body.pid, prn=body.prn, pmn=body.pmn)
                return [self._reply(modem, frame, cnf)]
            case GetKeyReq():
                out = [self._reply(modem, frame, GetKeyCnf(nid=modem.nid, your_nonce=body.my_nonce,
                                                           pid=body.pid, prn=body.prn, pmn=body.pmn))]
                if frame.dst == BROADCAST:  # every station of the network answers (used to count modems)
                    for other in self.modems:
                        if self.same_network(modem, other):
                            peer = Frame(dst=frame.src, src=other.mac, body=GetKeyCnf(nid=other.nid))
                            out.append((modem.index, peer.pack()))
                return out
            case LinkStatusReq():
                status = LINK_UP if self.link_up(modem) else LINK_DOWN
                return [self._reply(modem, frame, LinkStatusCnf(link_status=status), vendor=True)]
            case RsDevReq():
                nmk = random_nmk()
                modem.new_key(nmk, nid_from_nmk(nmk), self.clock())
                return [self._reply(modem, frame, RsDevCnf(), vendor=True)]
        return []

    def _slac(self, modem: Modem, frame: Frame, data: bytes) -> list[Delivery]:
        # SLAC messages are heard by every modem on the cable and handed to its host whatever their
        # destination (that is how a listen-mode station sees CM_SLAC_MATCH.CNF); hosts filter on MACs
        out: list[Delivery] = []
        for other in self.modems:
            if other is modem:
                continue
            out.append((other.index, data))
            if isinstance(frame.body, MnbcSoundInd) and other.profile:
                level = max(0, min(255, modem.atten + other.atten))
                profile = Frame(dst=other.host(), src=other.mac,
                                body=AttenProfileInd(pev_mac=frame.src, aag=[level] * SLAC_GROUPS))
                out.append((other.index, profile.pack()))
        return out

    def _data(self, modem: Modem, data: bytes, dst: bytes) -> list[Delivery]:
        members = [m for m in self.modems if self.same_network(modem, m)]
        if not members:
            return []
        targets = members if dst[0] & 1 else self._owner(bytes(dst), members)
        return [(m.index, data) for m in targets]


# ---------------------------------------------------------------------------- I/O ports
class _UdpPortProtocol(asyncio.DatagramProtocol):
    def __init__(self, port: UdpPort) -> None:
        self.port = port

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.port.peer = addr  # any datagram (the 1-byte registration too) tells us where the host is
        if len(data) >= 14:
            self.port.deliver(data)


class UdpPort:
    def __init__(self, index: int, address: str, deliver: Callable[[int, bytes], None]) -> None:
        host, _, port = address.rpartition(":")
        self.index, self.host, self.port = index, host or "127.0.0.1", int(port)
        self._deliver = deliver
        self.peer: Any = None
        self.transport: asyncio.DatagramTransport | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpPortProtocol(self), local_addr=(self.host, self.port))
        self.port = self.transport.get_extra_info("sockname")[1]

    def deliver(self, data: bytes) -> None:
        self._deliver(self.index, data)

    def to_host(self, data: bytes) -> None:
        if self.transport is not None and self.peer is not None:
            self.transport.sendto(data, self.peer)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def describe(self) -> str:
        return f"udp:{self.host}:{self.port}"


class IfacePort:
    """The medium end of a veth pair (or any interface): AF_PACKET, all ethertypes."""

    def __init__(self, index: int, interface: str, deliver: Callable[[int, bytes], None]) -> None:
        self.index, self.interface = index, interface
        self._deliver = deliver
        self.sock: socket.socket | None = None

    async def open(self) -> None:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((self.interface, 0))
        sock.setblocking(False)
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("vmodem receive failed", port=self.index, error=str(exc))
                return
            if addr[2] != PACKET_OUTGOING:  # what we send toward the host comes back as outgoing
                self._deliver(self.index, data)

    def to_host(self, data: bytes) -> None:
        if self.sock is not None:
            try:
                self.sock.send(data)
            except OSError as exc:
                log.error("vmodem send failed", port=self.index, error=str(exc))

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def describe(self) -> str:
        return f"iface:{self.interface}"


class VirtualModem:
    """A running medium: the pure `Medium` plus its ports."""

    def __init__(self, configs: list[PortConfig], join_delay: float = 0.05) -> None:
        self.medium = Medium(configs, join_delay=join_delay)
        self.ports: list[UdpPort | IfacePort] = []
        for i, cfg in enumerate(configs):
            if cfg.kind == "udp":
                self.ports.append(UdpPort(i, cfg.address, self._from_host))
            else:
                self.ports.append(IfacePort(i, cfg.address, self._from_host))

    async def open(self) -> None:
        for port in self.ports:
            await port.open()

    def close(self) -> None:
        for port in self.ports:
            port.close()

    def _from_host(self, index: int, data: bytes) -> None:
        for target, frame in self.medium.from_host(index, data):
            self.ports[target].to_host(frame)


async def serve(configs: list[PortConfig], join_delay: float, stopping: asyncio.Event,
                ready: Callable[[VirtualModem], None] | None = None) -> None:
    vm = VirtualModem(configs, join_delay)
    await vm.open()
    try:
        if ready is not None:
            ready(vm)
        await stopping.wait()
    finally:
        vm.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ccsbus vmodem", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--port", action="append", default=[], metavar="SPEC",
                        help="udp:HOST:PORT or iface:NAME, options ,atten=N ,noprofile ,mac=MAC (repeat)")
    parser.add_argument("--join-delay", type=float, default=0.05,
                        help="seconds from two modems sharing a key to their link being up")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        configs = [PortConfig.parse(p) for p in args.port]
    except ValueError as exc:
        print(f"ccsbus vmodem: {exc}", file=sys.stderr)
        return 2
    if len(configs) < 2:
        print("ccsbus vmodem: a medium needs at least two --port", file=sys.stderr)
        return 2

    async def run() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)

        def ready(vm: VirtualModem) -> None:
            ports = " ".join(f"{p.describe()}={mac_text(m.mac)}" for p, m in zip(vm.ports, vm.medium.modems,
                                                                                  strict=True))
            print(f"vmodem ready {ports}", flush=True)

        await serve(configs, args.join_delay, stopping, ready)

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"ccsbus vmodem: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
