"""The EVCC's SDP client: find the SECC's address and TCP port on the PLC link.

Requests go to ff02::1 UDP 15118 out of the PLC interface (the scope id picks it), repeated every
250 ms up to 50 times as the standard asks. On a laptop without root `lo` has no multicast, so the
target is configurable (e.g. `::1`). The first valid response wins; bad datagrams are reported and
ignored, since another host on the link may answer correctly.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass

from ccsbus.log import get_logger

from . import sdp, v2gtp

log = get_logger("v2g.sdp")


class SdpTimeout(TimeoutError):
    """No usable SDP response after the last retransmission."""


@dataclass(frozen=True)
class SdpResult:
    response: sdp.SdpResponse
    scope_id: int  # interface index for a link-local address, else 0
    requests: int  # how many requests it took

    @property
    def host(self) -> str:
        return str(self.response.address)


def scope_for(interface: str) -> int:
    """Interface index used as the IPv6 scope id; 0 when the interface does not exist."""
    if not interface:
        return 0
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        return 0


class _Client(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str | int, ...]], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.on_datagram(data, addr)


async def discover(
    target: str = sdp.SDP_MULTICAST,
    *,
    interface: str = "",
    port: int = sdp.SDP_PORT,
    interval: float = 0.25,
    max_requests: int = 50,
    security: sdp.Security = sdp.Security.NO_TLS,
    on_error: Callable[[str], None] | None = None,
) -> SdpResult:
    """Send SDP requests until a response arrives; SdpTimeout after `max_requests`."""
    scope = scope_for(interface)
    dest = ipaddress.IPv6Address(target)
    if (dest.is_multicast or dest.is_link_local) and not scope:
        raise OSError(f"SDP to {target} needs the PLC interface; {interface!r} does not exist")
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    if dest.is_multicast:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, scope)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
    sock.bind(("::", 0, 0, scope if dest.is_link_local or dest.is_multicast else 0))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[SdpResult] = loop.create_future()
    sent = 0

    def on_datagram(data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            ptype, payload = v2gtp.decode_datagram(data)
            if ptype != v2gtp.PAYLOAD_SDP_RES:
                raise sdp.SdpError(f"payload type 0x{ptype:04x} is not an SDP response")
            res = sdp.parse_response(payload)
        except (sdp.SdpError, v2gtp.V2gtpError) as exc:
            text = f"bad SDP response from {addr[0]}: {exc}"
            log.warning("bad sdp response", source=addr[0], reason=str(exc))
            if on_error is not None:
                on_error(text)
            return
        if res.transport is not sdp.Transport.TCP:
            log.warning("sdp response offers no TCP", source=addr[0])
            return
        if res.security is not security:
            # a TLS port spoken to in plain TCP (or the reverse) fails later with a vaguer error
            text = (f"SDP response from {addr[0]} offers {res.security.name}, "
                    f"we asked for {security.name}")
            log.warning("sdp security mismatch", source=addr[0], offered=res.security.name)
            if on_error is not None:
                on_error(text)
            return
        if not answer.done():
            res_scope = scope if res.address.is_link_local else 0
            answer.set_result(SdpResult(res, res_scope, sent))

    transport, _ = await loop.create_datagram_endpoint(lambda: _Client(on_datagram), sock=sock)
    frame = sdp.request_frame(sdp.SdpRequest(security, sdp.Transport.TCP))
    addr = (target, port, 0, scope if dest.is_link_local or dest.is_multicast else 0)
    try:
        while sent < max_requests:
            transport.sendto(frame, addr)
            sent += 1
            try:
                result = await asyncio.wait_for(asyncio.shield(answer), interval)
            except TimeoutError:
                continue
            log.info("sdp response", address=result.host, port=result.response.port,
                     security=result.response.security.name, requests=sent)
            return result
        raise SdpTimeout(f"no SDP response to {sent} requests to [{target}]:{port}")
    finally:
        transport.close()
