"""The simulated session's capture: the EVSE host's PLC frames plus its SDP and V2G exchange.

The HomePlug frames (SLAC and the modem's own messages) come from the tap as they were sent. The
V2G messages travel over loopback TCP in the simulation, so they are rebuilt from `v2g/message`:
each tree is encoded again with the EXI codec (the encoding is canonical, so the bytes are the ones
that crossed) and wrapped in V2GTP, TCP, IPv6 and Ethernet between the two hosts' link-local
addresses, with real checksums, so Wireshark and `ccsbus pcap decode` read the file as a capture.
SDP (also loopback) is rebuilt from the car entering its SDP state and the connection that follows.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccsbus.pcapio import PcapWriter

V2GTP_VERSION = 0x01
V2GTP_EXI = 0x8001
SECC_PORT = 15118  # the simulated SECC's TCP port as announced by SDP
EVCC_PORT = 49152
FALLBACK_EVSE_MAC = bytes.fromhex("02ccb5000001")
FALLBACK_PEV_MAC = bytes.fromhex("02ccb5000002")


def link_local(mac: bytes) -> bytes:
    """fe80::/64 with the modified EUI-64 of the MAC (RFC 4291)."""
    eui = bytearray(mac[:3] + b"\xff\xfe" + mac[3:])
    eui[0] ^= 0x02
    return bytes.fromhex("fe80000000000000") + bytes(eui)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_frame(src_mac: bytes, dst_mac: bytes, src_ip: bytes, dst_ip: bytes, sport: int, dport: int,
              seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    header = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags,
                         65535, 0, 0)
    segment = header + payload
    pseudo = src_ip + dst_ip + struct.pack("!IxxxB", len(segment), 6)
    csum = _checksum(pseudo + segment)
    segment = segment[:16] + struct.pack("!H", csum) + segment[18:]
    ipv6 = struct.pack("!IHBB", 6 << 28, len(segment), 6, 64) + src_ip + dst_ip
    return dst_mac + src_mac + b"\x86\xdd" + ipv6 + segment


def udp_frame(src_mac: bytes, dst_mac: bytes, src_ip: bytes, dst_ip: bytes, sport: int, dport: int,
              payload: bytes) -> bytes:
    datagram = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo = src_ip + dst_ip + struct.pack("!IxxxB", len(datagram), 17)
    csum = _checksum(pseudo + datagram) or 0xFFFF  # 0 means "no checksum", which IPv6 forbids
    datagram = datagram[:6] + struct.pack("!H", csum) + datagram[8:]
    ipv6 = struct.pack("!IHBB", 6 << 28, len(datagram), 17, 255) + src_ip + dst_ip
    return dst_mac + src_mac + b"\x86\xdd" + ipv6 + datagram


ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
ALL_NODES_MAC = bytes.fromhex("333300000001")
SDP_PORT = 15118
SDP_REQ, SDP_RES = 0x9000, 0x9001
NO_TLS, TCP = 0x10, 0x00


def v2gtp(payload: bytes, payload_type: int = V2GTP_EXI) -> bytes:
    return struct.pack("!BBHI", V2GTP_VERSION, V2GTP_VERSION ^ 0xFF, payload_type, len(payload)) + payload


SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01


@dataclass
class PlcCapture:
    """Collects frames during the session; `write(path)` puts them in time order into a pcap."""

    evse_mac: bytes | None = None
    pev_mac: bytes | None = None
    frames: list[tuple[float, bytes]] = field(default_factory=list)
    v2g: list[tuple[float, str, str, dict[str, Any]]] = field(default_factory=list)
    encode_failures: list[str] = field(default_factory=list)
    sdp_at: float | None = None

    def homeplug(self, frame: bytes, direction: str, t: float) -> None:
        """A frame from the EVSE host's tap: `out` the host sent it, `in` its modem delivered it."""
        if direction == "out" and self.evse_mac is None:
            self.evse_mac = frame[6:12]
        self.frames.append((t, frame))

    def note_peer(self, peer_mac: str | None) -> None:
        if peer_mac and self.pev_mac is None:
            self.pev_mac = bytes.fromhex(peer_mac.replace(":", ""))

    def sdp_started(self, t: float) -> None:
        """The car started SDP (its v2g/session state): the request goes out then."""
        if self.sdp_at is None:
            self.sdp_at = t

    def v2g_message(self, value: dict[str, Any]) -> None:
        """One `v2g/message` of the PEV stack (tx = request to the SECC, rx = its response)."""
        tree = value.get("tree")
        if isinstance(tree, dict):
            self.v2g.append((float(value.get("time", 0.0)), str(value.get("direction")),
                             str(value.get("protocol") or ""), tree))

    def _v2g_frames(self) -> list[tuple[float, bytes]]:
        if not self.v2g:
            return []
        try:
            import ccsbus_exi
        except ImportError as exc:
            self.encode_failures.append(f"codec not importable: {exc}")
            return []
        evse_mac = self.evse_mac or FALLBACK_EVSE_MAC
        pev_mac = self.pev_mac or FALLBACK_PEV_MAC
        evse_ip, pev_ip = link_local(evse_mac), link_local(pev_mac)
        out: list[tuple[float, bytes]] = []
        first = min(t for t, *_ in self.v2g)
        # SDP: the car's request when it entered SDP, the charger's answer just before the TCP
        # connection it announces (the sockets are loopback ones in the simulation: rebuilt here)
        if self.sdp_at is not None and self.sdp_at < first:
            out.append((self.sdp_at, udp_frame(pev_mac, ALL_NODES_MAC, pev_ip, ALL_NODES, EVCC_PORT + 1,
                                               SDP_PORT, v2gtp(bytes((NO_TLS, TCP)), SDP_REQ))))
            answer = evse_ip + struct.pack("!HBB", SECC_PORT, NO_TLS, TCP)
            out.append((first - 0.003, udp_frame(evse_mac, pev_mac, evse_ip, pev_ip, SDP_PORT,
                                                 EVCC_PORT + 1, v2gtp(answer, SDP_RES))))
        # the TCP handshake just before the first message, so readers see a whole connection
        c_seq, s_seq = 1000, 5000
        out.append((first - 0.002, tcp_frame(pev_mac, evse_mac, pev_ip, evse_ip, EVCC_PORT, SECC_PORT,
                                             c_seq, 0, SYN)))
        out.append((first - 0.0015, tcp_frame(evse_mac, pev_mac, evse_ip, pev_ip, SECC_PORT, EVCC_PORT,
                                              s_seq, c_seq + 1, SYN | ACK)))
        c_seq, s_seq = c_seq + 1, s_seq + 1
        out.append((first - 0.001, tcp_frame(pev_mac, evse_mac, pev_ip, evse_ip, EVCC_PORT, SECC_PORT,
                                             c_seq, s_seq, ACK)))
        last = first
        for t, direction, schema, tree in sorted(self.v2g, key=lambda item: item[0]):
            try:
                exi = ccsbus_exi.encode(schema, tree)
            except Exception as exc:  # ExiError and tree shape errors: report, keep the capture
                self.encode_failures.append(f"{schema} {next(iter(tree), '?')}: {exc}")
                continue
            data = v2gtp(exi)
            if direction == "tx":
                out.append((t, tcp_frame(pev_mac, evse_mac, pev_ip, evse_ip, EVCC_PORT, SECC_PORT,
                                         c_seq, s_seq, PSH | ACK, data)))
                c_seq += len(data)
            else:
                out.append((t, tcp_frame(evse_mac, pev_mac, evse_ip, pev_ip, SECC_PORT, EVCC_PORT,
                                         s_seq, c_seq, PSH | ACK, data)))
                s_seq += len(data)
            last = t
        out.append((last + 0.001, tcp_frame(pev_mac, evse_mac, pev_ip, evse_ip, EVCC_PORT, SECC_PORT,
                                            c_seq, s_seq, FIN | ACK)))
        return out

    def write(self, path: Path) -> int:
        frames = sorted([*self.frames, *self._v2g_frames()], key=lambda item: item[0])
        with PcapWriter(path) as writer:
            for t, frame in frames:
                writer.write(frame, t)
        return len(frames)
