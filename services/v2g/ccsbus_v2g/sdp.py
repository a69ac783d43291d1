"""SECC Discovery Protocol (ISO 15118-2 §7.10.1): message codec and the SECC's UDP server.

The EV multicasts an SDP request (security, transport) to ff02::1 port 15118; the SECC answers
unicast with its IPv6 address, TCP port, security and transport. The codec part is pure and
shared with the EVCC side; `SdpServer` is the SECC's asyncio UDP endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from . import v2gtp

SDP_PORT = 15118
SDP_MULTICAST = "ff02::1"

SDP_REQ_LEN = 2
SDP_RES_LEN = 20


class Security(IntEnum):
    TLS = 0x00
    NO_TLS = 0x10


class Transport(IntEnum):
    TCP = 0x00
    UDP = 0x10


class SdpError(ValueError):
    """An SDP payload that does not parse."""


@dataclass(frozen=True)
class SdpRequest:
    security: Security = Security.NO_TLS
    transport: Transport = Transport.TCP


@dataclass(frozen=True)
class SdpResponse:
    address: ipaddress.IPv6Address
    port: int
    security: Security = Security.NO_TLS
    transport: Transport = Transport.TCP


def _security(value: int) -> Security:
    try:
        return Security(value)
    except ValueError:
        raise SdpError(f"security 0x{value:02x} is neither 0x00 (TLS) nor 0x10 (no TLS)") from None


def _transport(value: int) -> Transport:
    try:
        return Transport(value)
    except ValueError:
        raise SdpError(f"transport 0x{value:02x} is neither 0x00 (TCP) nor 0x10 (UDP)") from None


def encode_request(req: SdpRequest) -> bytes:
    """SDP request payload (without the V2GTP header)."""
    return bytes((req.security, req.transport))


def parse_request(payload: bytes) -> SdpRequest:
    if len(payload) != SDP_REQ_LEN:
        raise SdpError(f"SDP request payload is {len(payload)} bytes, expected {SDP_REQ_LEN}")
    return SdpRequest(_security(payload[0]), _transport(payload[1]))


def encode_response(res: SdpResponse) -> bytes:
    """SDP response payload (without the V2GTP header)."""
    if not 0 < res.port <= 0xFFFF:
        raise SdpError(f"port {res.port} out of range")
    return res.address.packed + struct.pack(">HBB", res.port, res.security, res.transport)


def parse_response(payload: bytes) -> SdpResponse:
    if len(payload) != SDP_RES_LEN:
        raise SdpError(f"SDP response payload is {len(payload)} bytes, expected {SDP_RES_LEN}")
    port, security, transport = struct.unpack(">HBB", payload[16:])
    if port == 0:
        raise SdpError("SDP response names port 0")
    return SdpResponse(
        ipaddress.IPv6Address(payload[:16]), port, _security(security), _transport(transport)
    )


def request_frame(req: SdpRequest) -> bytes:
    """A whole SDP request datagram (V2GTP header included)."""
    return v2gtp.encode(encode_request(req), v2gtp.PAYLOAD_SDP_REQ)


def response_frame(res: SdpResponse) -> bytes:
    """A whole SDP response datagram (V2GTP header included)."""
    return v2gtp.encode(encode_response(res), v2gtp.PAYLOAD_SDP_RES)


def answer(
    datagram: bytes, address: ipaddress.IPv6Address, port: int, offer_tls: bool = False
) -> bytes:
    """The SECC's reply datagram to one request datagram; SdpError / V2gtpError when it is bad.

    We offer no TLS: a car asking for TLS gets the no-TLS answer and decides itself whether to
    proceed (cars that insist on TLS retry and give up, which is the standard's way to refuse).
    """
    payload_type, payload = v2gtp.decode_datagram(datagram)
    if payload_type != v2gtp.PAYLOAD_SDP_REQ:
        raise SdpError(f"payload type 0x{payload_type:04x} is not an SDP request")
    req = parse_request(payload)
    security = req.security if offer_tls else Security.NO_TLS
    return response_frame(SdpResponse(address, port, security, Transport.TCP))


# ---------------------------------------------------------------------------- I/O: the SECC server
def interface_index(interface: str) -> int:
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        raise OSError(f"no network interface named {interface!r}") from None


def link_local_address(interface: str) -> ipaddress.IPv6Address:
    """The interface's IPv6 link-local address (`::1` for `lo`, which has none)."""
    if interface == "lo":
        return ipaddress.IPv6Address("::1")
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5] == interface:
                    addr = ipaddress.IPv6Address(bytes.fromhex(parts[0]))
                    if addr.is_link_local:
                        return addr
    except OSError:
        pass
    raise OSError(f"interface {interface!r} has no IPv6 link-local address")


class _SdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: SdpServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.server.handle(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.server.on_error(f"SDP socket error: {exc}")


class SdpServer:
    """Answers SDP requests on UDP 15118 of one interface with our address and TCP port."""

    def __init__(
        self,
        interface: str,
        tcp_port: int,
        *,
        address: ipaddress.IPv6Address | None = None,
        udp_port: int = SDP_PORT,
        on_error: Callable[[str], None] | None = None,
        on_request: Callable[[tuple[str | int, ...]], None] | None = None,
    ) -> None:
        self.interface = interface
        self.tcp_port = tcp_port
        self.address = address
        self.udp_port = udp_port
        self._on_error = on_error
        self._on_request = on_request
        self._proto: _SdpProtocol | None = None
        self.requests = 0

    def on_error(self, text: str) -> None:
        if self._on_error is not None:
            self._on_error(text)

    async def start(self) -> None:
        if self.address is None:
            self.address = link_local_address(self.interface)
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ifindex = interface_index(self.interface)
        if self.interface != "lo":
            # join ff02::1 on the PLC interface only; `lo` has no multicast, the sim sends unicast
            mreq = ipaddress.IPv6Address(SDP_MULTICAST).packed + struct.pack("@I", ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            # without CAP_NET_RAW the multicast membership alone scopes us to the interface
            with contextlib.suppress(PermissionError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
        sock.bind(("::", self.udp_port, 0, 0))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(
            lambda: _SdpProtocol(self), sock=sock
        )
        proto.transport = transport  # connection_made runs only on the next loop turn
        self._proto = proto

    @property
    def bound_port(self) -> int:
        assert self._proto is not None and self._proto.transport is not None
        port: int = self._proto.transport.get_extra_info("sockname")[1]
        return port

    def handle(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        assert self.address is not None
        try:
            reply = answer(data, self.address, self.tcp_port)
        except (SdpError, v2gtp.V2gtpError) as exc:
            self.on_error(f"bad SDP request from {addr[0]}: {exc}")
            return
        self.requests += 1
        if self._on_request is not None:
            self._on_request(addr)
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.sendto(reply, addr)

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None
