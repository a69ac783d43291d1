"""The EVCC's TCP connection to the SECC with V2GTP framing, fully asyncio.

A reader task reassembles V2GTP messages from the stream; `receive()` hands out one EXI payload at
a time or raises what went wrong (bad header, connection closed), so the state machine can react
to each fault by name.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from ccsbus.log import get_logger

from . import v2gtp

log = get_logger("v2g.tcp")


class ConnectionLost(ConnectionError):
    """The SECC closed or reset the TCP connection."""


@dataclass(frozen=True)
class _Failure:
    error: Exception


class V2gClient:
    """One TCP connection to the SECC carrying V2GTP messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 max_payload: int = v2gtp.DEFAULT_MAX_PAYLOAD) -> None:
        self._reader = reader
        self._writer = writer
        self._frames = v2gtp.V2gtpReader(max_payload)
        self._queue: asyncio.Queue[bytes | _Failure] = asyncio.Queue()
        self._task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(cls, host: str, port: int, scope_id: int = 0,
                      timeout: float = 2.0) -> V2gClient:
        """Connect to the SECC (a link-local host needs the interface's scope id)."""
        target = f"{host}%{scope_id}" if scope_id and "%" not in host else host
        reader, writer = await asyncio.wait_for(asyncio.open_connection(target, port), timeout)
        log.info("tcp connected", host=host, port=port, scope=scope_id)
        return cls(reader, writer)

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    raise ConnectionLost("the SECC closed the connection")
                for ptype, payload in self._frames.feed(data):
                    if ptype != v2gtp.PAYLOAD_EXI:
                        raise v2gtp.V2gtpError(v2gtp.V2gtpErrorReason.UNKNOWN_PAYLOAD_TYPE,
                                               f"payload type 0x{ptype:04x} on the TCP link")
                    self._queue.put_nowait(payload)
        except asyncio.CancelledError:
            raise
        except (ConnectionError, OSError) as exc:
            error = exc if isinstance(exc, ConnectionLost) else ConnectionLost(
                f"connection lost: {exc}")
            self._queue.put_nowait(_Failure(error))
        except v2gtp.V2gtpError as exc:
            self._queue.put_nowait(_Failure(exc))

    def send(self, exi: bytes) -> None:
        """Queue one EXI message; the writer never blocks the loop."""
        if self._writer.is_closing():
            raise ConnectionLost("the connection is closed")
        self._writer.write(v2gtp.encode(exi, v2gtp.PAYLOAD_EXI))

    async def receive(self, timeout: float) -> bytes:
        """The next EXI payload; TimeoutError, ConnectionLost or V2gtpError otherwise."""
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if isinstance(item, _Failure):
            self._queue.put_nowait(item)  # every later receive sees the same failure
            raise item.error
        return item

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)
