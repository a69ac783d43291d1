"""The embedded broker: amqtt in-process, so a fresh machine needs no mosquitto to run the stack."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from typing import Any

from .log import get_logger

log = get_logger("broker")


class _SnapshotDict(dict[Any, Any]):
    """A dict whose iteration works on a copy.

    amqtt walks its subscription table with awaits inside the loop; a client subscribing meanwhile
    changed the table under the walk ("dictionary changed size during iteration") and amqtt dropped
    the connecting client. With a whole stack connecting at once that happened at every start.
    """

    def __iter__(self) -> Iterator[Any]:
        return iter(list(super().keys()))

    def keys(self) -> Any:
        return list(super().keys())

    def values(self) -> Any:
        return list(super().values())

    def items(self) -> Any:
        return list(super().items())


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """An MQTT 3.1.1 broker on loopback, started and stopped from asyncio code."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        from amqtt.broker import Broker  # imported late: only the embedded case pays for it

        # amqtt logs every packet at INFO; the stack's own logs are the ones users read
        for name in ("amqtt", "transitions", "passlib"):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}",
                                      "max_connections": 200}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        self._broker = Broker(config)
        if isinstance(getattr(self._broker, "_subscriptions", None), dict):
            self._broker._subscriptions = _SnapshotDict(self._broker._subscriptions)
        await self._broker.start()
        log.info("embedded broker listening", url=self.url)

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None


async def serve_forever(host: str, port: int) -> None:
    broker = EmbeddedBroker(host, port)
    await broker.start()
    try:
        await asyncio.Event().wait()
    finally:
        await broker.stop()
