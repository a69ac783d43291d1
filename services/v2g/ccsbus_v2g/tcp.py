"""The SECC's TCP server: V2GTP messages in and out of one car connection at a time.

ISO 15118-2 puts the SECC's port in the dynamic range (49152..65535) and names it in the SDP
response. A framing error (bad version, inverse, payload type or oversize length) closes the
connection, as [V2G2-065..067] / DIN [V2G-DC-164] ask; nothing is answered on a broken stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Awaitable, Callable

from . import v2gtp
from .v2gtp import V2gtpReader

DYNAMIC_PORTS = (49152, 65535)
_READ_CHUNK = 65536


class ConnectionClosed(Exception):
    """The car closed (or reset) the connection."""


class V2gConnection:
    """One accepted car connection: whole V2GTP messages in, frames out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 max_payload: int) -> None:
        self._reader = reader
        self._writer = writer
        self._framer = V2gtpReader(max_payload)
        self._queue: list[tuple[int, bytes]] = []
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer = f"[{peer[0]}]:{peer[1]}"
        self.last_rx: float = 0.0  # loop time the last message was complete

    async def receive(self) -> tuple[int, bytes]:
        """The next whole message; V2gtpError on a bad header, ConnectionClosed at EOF."""
        while not self._queue:
            try:
                data = await self._reader.read(_READ_CHUNK)
            except (ConnectionError, OSError) as exc:
                raise ConnectionClosed(str(exc)) from None
            if not data:
                raise ConnectionClosed("closed by the peer")
            self._queue.extend(self._framer.feed(data))
            self.last_rx = asyncio.get_running_loop().time()
        return self._queue.pop(0)

    def send(self, payload: bytes, payload_type: int = v2gtp.PAYLOAD_EXI) -> None:
        self.send_raw(v2gtp.encode(payload, payload_type))

    def send_raw(self, frame: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(frame)

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.drain()

    @property
    def closed(self) -> bool:
        return self._writer.is_closing()

    async def close(self) -> None:
        if not self._writer.is_closing():
            await self.drain()
            self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()

    def reset(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0), as a crashing peer would."""
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()


ConnectionHandler = Callable[[V2gConnection], Awaitable[None]]


class V2gServer:
    """Listens on our address; each new car connection replaces (closes) the previous one."""

    def __init__(self, address: str, interface: str, port: int, handler: ConnectionHandler,
                 max_payload: int = v2gtp.DEFAULT_MAX_PAYLOAD) -> None:
        self.address = address
        self.interface = interface
        self.port = port
        self.handler = handler
        self.max_payload = max_payload
        self._server: asyncio.Server | None = None
        self._current: tuple[V2gConnection, asyncio.Task[None]] | None = None

    def _host(self) -> str:
        # a link-local address needs its scope: fe80::1%eth1
        if self.address.lower().startswith("fe80") and "%" not in self.address:
            return f"{self.address}%{self.interface}"
        return self.address

    async def start(self) -> int:
        """Listen; returns the port (a free one of the dynamic range when port is 0)."""
        tries = 20 if self.port == 0 else 1
        for attempt in range(tries):
            port = self.port or random.randint(*DYNAMIC_PORTS)
            try:
                self._server = await asyncio.start_server(
                    self._accept, host=self._host(), port=port, family=socket.AF_INET6,
                    reuse_address=True)
            except OSError:
                if attempt == tries - 1:
                    raise
                continue
            self.port = port
            break
        return self.port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._current is not None:
            # the old session ends by itself on the reset (its read sees the end of the stream)
            self._current[0].reset()
        conn = V2gConnection(reader, writer, self.max_payload)
        me = asyncio.current_task()
        assert me is not None
        self._current = (conn, me)
        try:
            await self.handler(conn)
        finally:
            if self._current is not None and self._current[0] is conn:
                self._current = None
            await conn.close()

    async def close(self) -> None:
        if self._current is not None:
            conn, task = self._current
            conn.reset()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        self._server = None
