"""The EVCC's SDP client and V2GTP TCP client against real loopback sockets."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct

import pytest

from ccsbus_v2g import sdp, v2gtp
from ccsbus_v2g.sdp_client import SdpTimeout, discover
from ccsbus_v2g.tcp_client import ConnectionLost, V2gClient


def free_udp6_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        return int(s.getsockname()[1])


class ScriptedSdp(asyncio.DatagramProtocol):
    """Answers SDP requests after ignoring the first `ignore`, optionally with junk first."""

    def __init__(self, ignore: int = 0, junk_first: bool = False, port: int = 61000) -> None:
        self.ignore = ignore
        self.junk_first = junk_first
        self.port = port
        self.requests: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector's datagram transport does not subclass DatagramTransport in 3.11
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.requests.append(data)
        if len(self.requests) <= self.ignore:
            return
        assert self.transport is not None
        if self.junk_first:
            self.transport.sendto(b"\x02\xfd\x90\x01\x00\x00\x00\x14" + bytes(20), addr)
        res = sdp.SdpResponse(ipaddress.IPv6Address("::1"), self.port)
        self.transport.sendto(sdp.response_frame(res), addr)


async def start_sdp(proto: ScriptedSdp) -> tuple[asyncio.DatagramTransport, int]:
    port = free_udp6_port()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("::1", port))
    return transport, port


def test_sdp_client_finds_our_secc_server() -> None:
    async def main() -> None:
        udp = free_udp6_port()
        server = sdp.SdpServer("lo", tcp_port=15999, udp_port=udp)
        await server.start()
        try:
            found = await discover("::1", interface="lo", port=udp, interval=0.05)
        finally:
            server.close()
        assert found.response.port == 15999
        assert found.host == "::1"
        assert found.requests == 1
        assert server.requests == 1

    asyncio.run(main())


def test_sdp_client_retransmits_until_answered_and_skips_bad_answers() -> None:
    async def main() -> None:
        proto = ScriptedSdp(ignore=3, junk_first=True, port=40001)
        transport, port = await start_sdp(proto)
        errors: list[str] = []
        try:
            found = await discover("::1", port=port, interval=0.03, on_error=errors.append)
        finally:
            transport.close()
        assert found.requests == 4
        assert found.response.port == 40001
        assert len(proto.requests) == 4
        # every request is the 10-byte V2GTP SDP request: no TLS, TCP
        assert all(r == v2gtp.encode(b"\x10\x00", v2gtp.PAYLOAD_SDP_REQ) for r in proto.requests)
        assert errors and "bad protocol version" in errors[0]

    asyncio.run(main())


def test_sdp_client_gives_up_after_max_requests() -> None:
    async def main() -> None:
        proto = ScriptedSdp(ignore=10_000)
        transport, port = await start_sdp(proto)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            with pytest.raises(SdpTimeout, match="5 requests"):
                await discover("::1", port=port, interval=0.02, max_requests=5)
        finally:
            transport.close()
        assert len(proto.requests) == 5
        assert 0.08 <= loop.time() - started < 1.0

    asyncio.run(main())


def test_sdp_to_multicast_needs_a_real_interface() -> None:
    async def main() -> None:
        with pytest.raises(OSError, match="needs the PLC interface"):
            await discover("ff02::1", interface="no-such-if0", max_requests=1)

    asyncio.run(main())


async def tcp_server(handler: object) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "::1", 0)  # type: ignore[arg-type]
    port = server.sockets[0].getsockname()[1]
    return server, int(port)


def test_tcp_client_reassembles_split_frames_and_sends_framed() -> None:
    async def main() -> None:
        got: list[bytes] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            got.append(await reader.readexactly(8 + 3))
            frames = v2gtp.encode(b"\x80\x9a\x01") + v2gtp.encode(b"\x80\x9a\x02\x03")
            for i in range(0, len(frames), 3):  # cut the stream into small segments
                writer.write(frames[i:i + 3])
                await writer.drain()
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.5)
            writer.close()

        server, port = await tcp_server(handle)
        client = await V2gClient.connect("::1", port)
        client.send(b"\x80\x00\x01")
        assert await client.receive(1.0) == b"\x80\x9a\x01"
        assert await client.receive(1.0) == b"\x80\x9a\x02\x03"
        with pytest.raises(TimeoutError):
            await client.receive(0.05)
        await client.close()
        server.close()
        assert got == [v2gtp.encode(b"\x80\x00\x01")]

    asyncio.run(main())


@pytest.mark.parametrize("header", [
    struct.pack(">BBHI", 0x02, 0xFD, 0x8001, 3),
    struct.pack(">BBHI", 0x01, 0xFF, 0x8001, 3),
    struct.pack(">BBHI", 0x01, 0xFE, 0x8001, 10_000_000),
    struct.pack(">BBHI", 0x01, 0xFE, 0x9001, 3),
])
def test_tcp_client_reports_a_bad_v2gtp_header(header: bytes) -> None:
    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(header + b"\x80\x9a\x01")
            await writer.drain()
            await asyncio.sleep(0.5)
            writer.close()

        server, port = await tcp_server(handle)
        client = await V2gClient.connect("::1", port)
        with pytest.raises(v2gtp.V2gtpError):
            await client.receive(1.0)
        with pytest.raises(v2gtp.V2gtpError):  # the stream stays broken
            await client.receive(0.1)
        await client.close()
        server.close()

    asyncio.run(main())


def test_tcp_client_reports_reset_and_close() -> None:
    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            # SO_LINGER 0: close sends RST instead of FIN, as a crashing charger does
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

        server, port = await tcp_server(handle)
        client = await V2gClient.connect("::1", port)
        with pytest.raises(ConnectionLost):
            await client.receive(1.0)
        with pytest.raises(ConnectionLost):
            await client.receive(0.1)
        await client.close()
        server.close()

    asyncio.run(main())


def test_sdp_client_skips_an_answer_with_other_security() -> None:
    class TlsThenPlain(ScriptedSdp):
        def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
            self.requests.append(data)
            assert self.transport is not None
            security = sdp.Security.TLS if len(self.requests) == 1 else sdp.Security.NO_TLS
            res = sdp.SdpResponse(ipaddress.IPv6Address("::1"), 40000 + len(self.requests),
                                  security)
            self.transport.sendto(sdp.response_frame(res), addr)

    async def main() -> None:
        proto = TlsThenPlain()
        transport, port = await start_sdp(proto)
        errors: list[str] = []
        try:
            found = await discover("::1", port=port, interval=0.03, on_error=errors.append)
        finally:
            transport.close()
        assert found.response.port == 40002
        assert found.response.security is sdp.Security.NO_TLS
        assert errors == ["SDP response from ::1 offers TLS, we asked for NO_TLS"]

    asyncio.run(main())
