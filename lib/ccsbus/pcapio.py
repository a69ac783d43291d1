"""Reading and writing packet captures, and pulling SLAC, SDP and V2GTP traffic out of them.

Written for the captures users bring from the field (pcap and pcapng, Ethernet link type) and for the
captures the simulated session writes. Pure parsing: no libpcap needed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

LINKTYPE_ETHERNET = 1
ETH_P_IPV6 = 0x86DD
ETH_P_HOMEPLUG = 0x88E1
ETH_P_VLAN = 0x8100
IPPROTO_TCP = 6
IPPROTO_UDP = 17
V2G_UDP_PORT = 15118
_IPV6_EXT_HEADERS = {0, 43, 44, 50, 51, 60, 135}


class CaptureError(ValueError):
    """The file is not a capture this reader understands, or is cut short."""


@dataclass(frozen=True)
class Frame:
    time: float
    data: bytes
    linktype: int = LINKTYPE_ETHERNET
    index: int = 0


def _read_pcap(fh: BinaryIO, head: bytes) -> Iterator[Frame]:
    magic = head[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:  # pragma: no cover - caller checked
        raise CaptureError("not a pcap file")
    nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    rest = fh.read(20)
    if len(rest) < 20:
        raise CaptureError("pcap global header cut short")
    linktype = struct.unpack(endian + "I", rest[16:20])[0] & 0x0FFFFFFF
    index = 0
    while True:
        rec = fh.read(16)
        if not rec:
            return
        if len(rec) < 16:
            raise CaptureError(f"record {index}: header cut short")
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", rec)
        data = fh.read(incl)
        if len(data) < incl:
            raise CaptureError(f"record {index}: data cut short")
        yield Frame(sec + frac / (1e9 if nanos else 1e6), data, linktype, index)
        index += 1


def _read_pcapng(fh: BinaryIO, head: bytes) -> Iterator[Frame]:
    buf = head + fh.read()
    off = 0
    endian = "<"
    interfaces: list[tuple[int, float]] = []  # (linktype, seconds per tick)
    index = 0
    while off + 12 <= len(buf):
        btype_raw = buf[off:off + 4]
        if btype_raw == b"\x0a\x0d\x0d\x0a":
            bom = buf[off + 8:off + 12]
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            interfaces = []
        btype, blen = struct.unpack_from(endian + "II", buf, off)
        if blen < 12 or off + blen > len(buf):
            raise CaptureError(f"pcapng block at byte {off}: bad length {blen}")
        body = buf[off + 8:off + blen - 4]
        if btype == 1:  # interface description
            linktype = struct.unpack_from(endian + "H", body, 0)[0]
            interfaces.append((linktype, _tsresol(body[8:], endian)))
        elif btype == 6:  # enhanced packet
            iface, ts_hi, ts_lo, caplen = struct.unpack_from(endian + "IIII", body, 0)
            linktype, tick = interfaces[iface] if iface < len(interfaces) else (LINKTYPE_ETHERNET, 1e-6)
            yield Frame(((ts_hi << 32) | ts_lo) * tick, bytes(body[20:20 + caplen]), linktype, index)
            index += 1
        elif btype == 3:  # simple packet
            linktype = interfaces[0][0] if interfaces else LINKTYPE_ETHERNET
            yield Frame(0.0, bytes(body[4:]), linktype, index)
            index += 1
        off += blen


def _tsresol(options: bytes, endian: str) -> float:
    off = 0
    while off + 4 <= len(options):
        code, length = struct.unpack_from(endian + "HH", options, off)
        if code == 0:
            break
        if code == 9 and length >= 1:
            res = options[off + 4]
            return 2.0 ** -(res & 0x7F) if res & 0x80 else 10.0 ** -res
        off += 4 + ((length + 3) & ~3)
    return 1e-6


def read_frames(path: str | Path) -> Iterator[Frame]:
    """Every frame of a pcap or pcapng file, in file order."""
    with open(path, "rb") as fh:
        head = fh.read(4)
        if head == b"\x0a\x0d\x0d\x0a":
            yield from _read_pcapng(fh, head)
        elif head in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
            yield from _read_pcap(fh, head)
        else:
            raise CaptureError(f"{path}: neither pcap nor pcapng (starts {head.hex()})")


class PcapWriter:
    """Classic pcap (microseconds, Ethernet) that Wireshark and tshark open."""

    def __init__(self, path: str | Path, linktype: int = LINKTYPE_ETHERNET) -> None:
        self._fh = open(path, "wb")  # noqa: SIM115 - closed by close()/context manager
        self._fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))

    def write(self, data: bytes, time: float) -> None:
        sec = int(time)
        usec = round((time - sec) * 1e6)
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        self._fh.write(struct.pack("<IIII", sec, usec, len(data), len(data)) + data)
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------- headers


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02X}" for b in raw)


@dataclass(frozen=True)
class Ethernet:
    dst: bytes
    src: bytes
    ethertype: int
    payload: bytes


def parse_ethernet(data: bytes) -> Ethernet | None:
    if len(data) < 14:
        return None
    ethertype = struct.unpack_from("!H", data, 12)[0]
    off = 14
    while ethertype == ETH_P_VLAN and len(data) >= off + 4:
        ethertype = struct.unpack_from("!H", data, off + 2)[0]
        off += 4
    return Ethernet(data[0:6], data[6:12], ethertype, data[off:])


@dataclass(frozen=True)
class IPv6:
    src: bytes
    dst: bytes
    next_header: int
    payload: bytes


def parse_ipv6(data: bytes) -> IPv6 | None:
    if len(data) < 40 or data[0] >> 4 != 6:
        return None
    length = struct.unpack_from("!H", data, 4)[0]
    nxt = data[6]
    payload = data[40:40 + length]
    while nxt in _IPV6_EXT_HEADERS and nxt != 59 and len(payload) >= 8:
        ext_len = 8 if nxt == 44 else (payload[1] + 1) * 8
        nxt, payload = payload[0], payload[ext_len:]
    return IPv6(data[8:24], data[24:40], nxt, payload)


@dataclass(frozen=True)
class Udp:
    sport: int
    dport: int
    payload: bytes


def parse_udp(data: bytes) -> Udp | None:
    if len(data) < 8:
        return None
    sport, dport, length = struct.unpack_from("!HHH", data, 0)
    return Udp(sport, dport, data[8:max(8, length)])


@dataclass(frozen=True)
class Tcp:
    sport: int
    dport: int
    seq: int
    flags: int
    payload: bytes

    @property
    def syn(self) -> bool:
        return bool(self.flags & 0x02)

    @property
    def fin(self) -> bool:
        return bool(self.flags & 0x01)

    @property
    def rst(self) -> bool:
        return bool(self.flags & 0x04)


def parse_tcp(data: bytes) -> Tcp | None:
    if len(data) < 20:
        return None
    sport, dport, seq, _ack, off_flags = struct.unpack_from("!HHIIH", data, 0)
    header = (off_flags >> 12) * 4
    if header < 20 or header > len(data):
        return None
    return Tcp(sport, dport, seq, off_flags & 0x1FF, data[header:])


def ipv6_text(raw: bytes) -> str:
    import ipaddress

    return str(ipaddress.IPv6Address(raw))


# ---------------------------------------------------------------------------- V2GTP over TCP


@dataclass(frozen=True)
class Segment:
    time: float
    src: str
    dst: str
    sport: int
    dport: int
    payload: bytes


@dataclass(frozen=True)
class V2gtpMessage:
    """One V2GTP message cut out of a reassembled TCP stream (time of its last segment)."""

    time: float
    src: str
    dst: str
    sport: int
    dport: int
    payload_type: int
    payload: bytes
    src_mac: str = ""
    dst_mac: str = ""


@dataclass
class _Flow:
    next_seq: int | None = None
    buffer: bytearray = field(default_factory=bytearray)
    pending: dict[int, tuple[float, bytes]] = field(default_factory=dict)


def ipv6_packets(frames: Iterable[Frame]) -> Iterator[tuple[Frame, Ethernet, IPv6]]:
    for frame in frames:
        if frame.linktype != LINKTYPE_ETHERNET:
            continue
        eth = parse_ethernet(frame.data)
        if eth is None or eth.ethertype != ETH_P_IPV6:
            continue
        ip = parse_ipv6(eth.payload)
        if ip is not None:
            yield frame, eth, ip


def homeplug_frames(frames: Iterable[Frame]) -> Iterator[tuple[Frame, Ethernet]]:
    """The HomePlug AV/GP management frames (ethertype 0x88E1), where SLAC lives."""
    for frame in frames:
        eth = parse_ethernet(frame.data) if frame.linktype == LINKTYPE_ETHERNET else None
        if eth is not None and eth.ethertype == ETH_P_HOMEPLUG:
            yield frame, eth


def sdp_datagrams(frames: Iterable[Frame]) -> Iterator[tuple[Frame, IPv6, Udp]]:
    for frame, _eth, ip in ipv6_packets(frames):
        if ip.next_header != IPPROTO_UDP:
            continue
        udp = parse_udp(ip.payload)
        if udp is not None and V2G_UDP_PORT in (udp.sport, udp.dport):
            yield frame, ip, udp


def v2gtp_messages(frames: Iterable[Frame], max_payload: int = 1 << 20) -> Iterator[V2gtpMessage]:
    """Reassemble every TCP stream and cut it into V2GTP messages (header 0x01 0xFE).

    Retransmitted and overlapping segments are dropped by sequence number; a stream that does not
    start with a V2GTP header (some other TCP traffic) is skipped until one appears.
    """
    flows: dict[tuple[str, int, str, int], _Flow] = {}
    for frame, eth, ip in ipv6_packets(frames):
        if ip.next_header != IPPROTO_TCP:
            continue
        tcp = parse_tcp(ip.payload)
        if tcp is None:
            continue
        key = (ipv6_text(ip.src), tcp.sport, ipv6_text(ip.dst), tcp.dport)
        flow = flows.setdefault(key, _Flow())
        if tcp.syn:
            flow.next_seq = (tcp.seq + 1) & 0xFFFFFFFF
            flow.buffer.clear()
            flow.pending.clear()
            continue
        if not tcp.payload:
            continue
        if flow.next_seq is None:  # capture started mid-stream
            flow.next_seq = tcp.seq
        flow.pending[tcp.seq] = (frame.time, tcp.payload)
        last_time = frame.time
        while True:
            assert flow.next_seq is not None
            item = flow.pending.pop(flow.next_seq, None)
            if item is None:
                # a segment that overlaps what we already have (retransmission with new cut)
                for seq in list(flow.pending):
                    delta = (flow.next_seq - seq) & 0xFFFFFFFF
                    seg_time, data = flow.pending[seq]
                    if 0 < delta < len(data):
                        del flow.pending[seq]
                        item = (seg_time, data[delta:])
                        break
                    if 0 < delta < 1 << 31:  # entirely old
                        del flow.pending[seq]
                if item is None:
                    break
            last_time, data = item
            flow.buffer += data
            flow.next_seq = (flow.next_seq + len(data)) & 0xFFFFFFFF
        yield from _cut_v2gtp(flow, key, last_time, eth, max_payload)


def _cut_v2gtp(flow: _Flow, key: tuple[str, int, str, int], time: float, eth: Ethernet,
               max_payload: int) -> Iterator[V2gtpMessage]:
    buf = flow.buffer
    while len(buf) >= 8:
        if buf[0] != 0x01 or buf[1] != 0xFE:
            start = buf.find(b"\x01\xfe", 1)
            del buf[:start if start > 0 else len(buf) - 1]
            continue
        ptype, length = struct.unpack_from("!HI", buf, 2)
        if length > max_payload:
            del buf[:2]
            continue
        if len(buf) < 8 + length:
            return
        payload = bytes(buf[8:8 + length])
        del buf[:8 + length]
        src, sport, dst, dport = key
        yield V2gtpMessage(time, src, dst, sport, dport, ptype, payload,
                           mac_text(eth.src), mac_text(eth.dst))
