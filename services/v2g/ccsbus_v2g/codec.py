"""The EXI codec as the V2G service sees it: decode/encode of trees, in process or over MQTT.

`MqttCodec` talks to the codec service (`ccsbus run exi`) over `exi/request` / `exi/reply/<client>`;
`InProcessCodec` calls the ccsbus_exi binding directly. Both raise CodecError on any failure, so the
state machines never see transport details.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from enum import Enum
from typing import Any, Protocol

from ccsbus.bus import Bus

SCHEMAS = ("apphand", "din", "iso2")

# A codec reply later than this means the codec service is gone; the V2G timeouts are 2 s and up.
DEFAULT_TIMEOUT = 1.0


class CodecMode(Enum):
    MQTT = "mqtt"
    INPROCESS = "inprocess"


class CodecError(Exception):
    """The codec could not decode or encode (bad data, bad tree, codec unreachable)."""

    def __init__(self, message: str, code: str = "codec", offset: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.offset = offset


class Codec(Protocol):
    async def decode(self, schema: str, data: bytes) -> dict[str, Any]: ...

    async def encode(self, schema: str, tree: dict[str, Any]) -> bytes: ...


class InProcessCodec:
    """The C codec in this process: microseconds per message, no broker hop."""

    def __init__(self) -> None:
        try:
            import ccsbus_exi
        except ImportError as exc:  # pragma: no cover - depends on the build
            raise CodecError(
                f"the EXI binding ccsbus_exi is not installed: {exc}", "missing"
            ) from None
        self._exi = ccsbus_exi

    async def decode(self, schema: str, data: bytes) -> dict[str, Any]:
        try:
            tree: dict[str, Any] = self._exi.decode(schema, data)
        except self._exi.ExiError as exc:
            raise CodecError(f"decode {schema}: {exc}", exc.name, exc.offset) from None
        return tree

    async def encode(self, schema: str, tree: dict[str, Any]) -> bytes:
        try:
            data: bytes = self._exi.encode(schema, tree)
        except self._exi.ExiError as exc:
            raise CodecError(f"encode {schema}: {exc}", exc.name, exc.offset) from None
        return data


_client_ids = itertools.count(1)


class MqttCodec:
    """Request/reply with the codec service; one reply topic per instance, replies matched by id."""

    def __init__(
        self, bus: Bus, timeout: float = DEFAULT_TIMEOUT, client: str | None = None
    ) -> None:
        self.bus = bus
        self.timeout = timeout
        self.client = client or f"v2g-{os.getpid()}-{next(_client_ids)}"
        self.reply_to = f"exi/reply/{self.client}"
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # replies are ours alone (the topic names this instance): parse them in the MQTT thread
        # and skip the contract check, one less step on the CurrentDemand path
        bus.subscribe(self.reply_to, self._on_reply_raw, raw=True, in_network_thread=True)

    def _on_reply_raw(self, path: str, raw: bytes) -> None:
        """Runs in the MQTT network thread."""
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(value, dict):
            return
        future = self._pending.get(str(value.get("id")))
        loop = self._loop
        if future is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                loop.call_soon_threadsafe(_resolve, future, value)

    async def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        corr = f"{self.client}-{next(self._ids)}"
        request = {"id": corr, "reply_to": self.reply_to, **request}
        self._loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._pending[corr] = future
        try:
            self.bus.publish("exi/request", request)
            reply = await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            raise CodecError(
                f"no reply from the codec service within {self.timeout} s "
                "(is `ccsbus run exi` running?)",
                "timeout",
            ) from None
        finally:
            self._pending.pop(corr, None)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise CodecError(
                f"{request['op']} {request['schema']}: {error.get('message', 'failed')}",
                str(error.get("name", "codec")),
                error.get("offset"),
            )
        return reply

    async def decode(self, schema: str, data: bytes) -> dict[str, Any]:
        reply = await self._call({"op": "decode", "schema": schema, "hex": data.hex()})
        tree = reply.get("tree")
        if not isinstance(tree, dict):
            raise CodecError("codec reply carries no tree", "reply")
        return tree

    async def encode(self, schema: str, tree: dict[str, Any]) -> bytes:
        reply = await self._call({"op": "encode", "schema": schema, "tree": tree})
        try:
            return bytes.fromhex(str(reply.get("hex")))
        except ValueError:
            raise CodecError("codec reply carries no hex", "reply") from None


def _resolve(future: asyncio.Future[dict[str, Any]], value: dict[str, Any]) -> None:
    if not future.done():
        future.set_result(value)


def make_codec(mode: CodecMode, bus: Bus, timeout: float = DEFAULT_TIMEOUT) -> Codec:
    if mode is CodecMode.INPROCESS:
        return InProcessCodec()
    return MqttCodec(bus, timeout)
