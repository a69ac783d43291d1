"""A tap on the simulated PLC link: a UDP relay between a SLAC service and its virtual-modem port.

The SLAC service's `UdpLink` talks to the tap as if it were the modem port; the tap forwards every
datagram both ways and hands each Ethernet frame to a callback with its direction, which is what a
capture on the host's PLC interface would see (the frames the host sends and the ones its modem
delivers).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from typing import Any

FrameSink = Callable[[bytes, str, float], None]  # (frame, "out" host->modem | "in" modem->host, time)


class _HostSide(asyncio.DatagramProtocol):
    def __init__(self, tap: UdpTap) -> None:
        self.tap = tap

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.tap.from_host(data, addr)


class _ModemSide(asyncio.DatagramProtocol):
    def __init__(self, tap: UdpTap) -> None:
        self.tap = tap

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.tap.from_modem(data)

    def error_received(self, exc: Exception) -> None:
        # the virtual modem is not up yet: the host's own discovery retries cover it
        pass


class UdpTap:
    """Listens on `listen_port`, forwards to the modem port `modem_port`, reports every frame."""

    def __init__(self, listen_port: int, modem_port: int, sink: FrameSink | None = None,
                 host: str = "127.0.0.1") -> None:
        self.host = host
        self.listen_port = listen_port
        self.modem_port = modem_port
        self.sink = sink
        self.frames = 0
        self._host_addr: Any = None
        self._host: asyncio.DatagramTransport | None = None
        self._modem: asyncio.DatagramTransport | None = None
        self._modem_sock: socket.socket | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._host, _ = await loop.create_datagram_endpoint(
            lambda: _HostSide(self), local_addr=(self.host, self.listen_port))
        # our own socket for the modem side: asyncio drops empty datagrams, but an empty one is how a
        # host registers with its modem port, so those go out through the socket directly
        self._modem_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._modem_sock.setblocking(False)
        self._modem_sock.connect((self.host, self.modem_port))
        self._modem, _ = await loop.create_datagram_endpoint(lambda: _ModemSide(self),
                                                             sock=self._modem_sock)

    def from_host(self, data: bytes, addr: Any) -> None:
        self._host_addr = addr
        if self._modem is not None:
            if data:
                self._modem.sendto(data)
            elif self._modem_sock is not None:
                with contextlib.suppress(OSError):
                    self._modem_sock.send(b"")
        self._report(data, "out")

    def from_modem(self, data: bytes) -> None:
        if self._host is not None and self._host_addr is not None:
            self._host.sendto(data, self._host_addr)
        self._report(data, "in")

    def _report(self, data: bytes, direction: str) -> None:
        if len(data) >= 14:  # an empty datagram only registers the host with the port
            self.frames += 1
            if self.sink is not None:
                self.sink(data, direction, time.time())

    def close(self) -> None:
        for transport in (self._host, self._modem):
            if transport is not None:
                transport.close()
        self._host = self._modem = None
        self._modem_sock = None  # closed with its transport
