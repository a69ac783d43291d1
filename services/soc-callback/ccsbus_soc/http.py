"""A small HTTP/1.1 client over asyncio streams: one request per connection, a deadline on all of it.

SmartEVSE answers a short JSON; nothing here needs keep-alive, chunked uploads or redirects. Every
failure becomes an HttpError whose message says what went wrong (refused, timeout, bad status line).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_BODY = 64 * 1024  # SmartEVSE's answer is a few hundred bytes; more means something else answered


class HttpError(Exception):
    """The request did not produce an HTTP response."""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


async def request(method: str, url: str, timeout: float, user_agent: str = "ccsbus-soc") -> Response:
    """Send one request without a body; the whole exchange (connect to last byte) within `timeout`."""
    try:
        return await asyncio.wait_for(_exchange(method, url, user_agent), timeout)
    except TimeoutError:
        raise HttpError(f"no complete answer within {timeout:g} s") from None
    except (ConnectionError, OSError) as exc:
        raise HttpError(f"connection failed: {exc.strerror or exc}") from None
    except asyncio.IncompleteReadError:
        raise HttpError("connection closed before the answer was complete") from None


async def _exchange(method: str, url: str, user_agent: str) -> Response:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"not an http(s) URL: {url!r}")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    reader, writer = await asyncio.open_connection(
        parts.hostname, port, ssl=ssl.create_default_context() if secure else None)
    try:
        head = (f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\n"
                "Accept: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        writer.write(head.encode("latin-1"))
        await writer.drain()
        return await _read_response(reader)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader) -> Response:
    status_line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
    bits = status_line.split(" ", 2)
    if len(bits) < 2 or not bits[0].startswith("HTTP/") or not bits[1].isdigit():
        raise HttpError(f"bad status line {status_line[:60]!r}")
    status, reason = int(bits[1]), bits[2] if len(bits) > 2 else ""
    headers: dict[str, str] = {}
    while True:
        line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise HttpError(f"bad Content-Length {headers['content-length']!r}") from None
        body = await reader.readexactly(min(length, MAX_BODY))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        body = await reader.read(MAX_BODY)
    return Response(status, reason, headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while len(body) < MAX_BODY:
        size_line = (await reader.readline()).decode("latin-1").split(";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise HttpError(f"bad chunk size {size_line[:20]!r}") from None
        if size == 0:
            break
        body += await reader.readexactly(size)
        await reader.readline()
    return bytes(body[:MAX_BODY])
