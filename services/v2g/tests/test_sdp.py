"""SDP message codec (pure) and the SECC's UDP server over a real loopback socket."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from ccsbus_v2g import sdp, v2gtp
from ccsbus_v2g.sdp import SdpError, SdpRequest, SdpResponse, Security, Transport


def test_request_roundtrip_and_bytes() -> None:
    frame = sdp.request_frame(SdpRequest(Security.NO_TLS, Transport.TCP))
    assert frame == bytes.fromhex("01fe9000000000021000")
    _, payload = v2gtp.decode_datagram(frame)
    assert sdp.parse_request(payload) == SdpRequest(Security.NO_TLS, Transport.TCP)
    assert sdp.parse_request(b"\x00\x00").security is Security.TLS


def test_response_roundtrip() -> None:
    res = SdpResponse(ipaddress.IPv6Address("fe80::1234:5678"), 51234, Security.NO_TLS)
    payload = sdp.encode_response(res)
    assert len(payload) == 20
    assert payload[16:] == bytes.fromhex("c8221000")
    assert sdp.parse_response(payload) == res


@pytest.mark.parametrize("payload", [b"\x10", b"\x10\x00\x00", b"\x11\x00", b"\x10\x01"])
def test_bad_requests(payload: bytes) -> None:
    with pytest.raises(SdpError):
        sdp.parse_request(payload)


def test_bad_response_length_and_port() -> None:
    with pytest.raises(SdpError):
        sdp.parse_response(bytes(19))
    with pytest.raises(SdpError):
        sdp.parse_response(bytes(16) + b"\x00\x00\x10\x00")


def test_answer_offers_no_tls_and_our_port() -> None:
    addr = ipaddress.IPv6Address("fe80::2")
    reply = sdp.answer(sdp.request_frame(SdpRequest(Security.TLS)), addr, 60000)
    ptype, payload = v2gtp.decode_datagram(reply)
    assert ptype == v2gtp.PAYLOAD_SDP_RES
    assert sdp.parse_response(payload) == SdpResponse(addr, 60000, Security.NO_TLS, Transport.TCP)
    with pytest.raises(SdpError):
        sdp.answer(v2gtp.encode(b"\x10\x00", v2gtp.PAYLOAD_EXI), addr, 60000)


def test_server_answers_unicast_on_loopback() -> None:
    asyncio.run(_server_answers_unicast_on_loopback())


async def _server_answers_unicast_on_loopback() -> None:
    errors: list[str] = []
    server = sdp.SdpServer("lo", 61000, udp_port=0, on_error=errors.append)
    await server.start()
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.sendto(b"garbage", ("::1", server.bound_port))
        sock.sendto(sdp.request_frame(SdpRequest()), ("::1", server.bound_port))
        data = await asyncio.wait_for(loop.sock_recv(sock, 100), 2)
    finally:
        sock.close()
        server.close()
    _, payload = v2gtp.decode_datagram(data)
    res = sdp.parse_response(payload)
    assert res.address == ipaddress.IPv6Address("::1") and res.port == 61000
    assert server.requests == 1
    assert len(errors) == 1 and "bad SDP request" in errors[0]


def test_sdp_of_real_captures() -> None:
    """Every SDP request of the captures gets our answer; every SDP response parses."""
    from ccsbus.testing.fixtures import shared_dir

    pcapio = pytest.importorskip("ccsbus.pcapio", reason="ccsbus.pcapio is not in this tree")
    requests = responses = 0
    for capture in sorted(shared_dir("captures").glob("*/*.pcap*")):
        for _, _, udp in pcapio.sdp_datagrams(pcapio.read_frames(capture)):
            ptype, payload = v2gtp.decode_datagram(udp.payload)
            if ptype == v2gtp.PAYLOAD_SDP_REQ:
                reply = sdp.answer(udp.payload, ipaddress.IPv6Address("fe80::1"), 50000)
                assert sdp.parse_response(v2gtp.decode_datagram(reply)[1]).port == 50000
                requests += 1
            elif ptype == v2gtp.PAYLOAD_SDP_RES:
                res = sdp.parse_response(payload)
                assert res.address.is_link_local and res.transport is Transport.TCP
                responses += 1
    assert requests > 10 and responses > 5
