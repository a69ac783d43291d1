"""The MQTT bus as every service sees it: contract-checked publish, validated subscribe, availability.

paho-mqtt runs its network loop in its own thread (so a busy asyncio loop never starves the keepalive);
every received message is handed to the service's asyncio loop. The wrapper keeps the retained state
the service published and sends it again after a reconnect, so a broker restart loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .config import BrokerConfig
from .contract import Contract, PayloadError, Topic, load_contract
from .log import EventLog, get_logger

Handler = Callable[[str, Any], Awaitable[None] | None]

_ERROR_EXCERPT = 200


class PublishRefused(PermissionError):
    """The contract does not give this service the topic (or the value does not fit it)."""


@dataclass
class _Subscription:
    topic: Topic | None
    mqtt_filter: str
    handler: Handler
    raw: bool
    in_network_thread: bool = False


class Bus:
    """One service's connection to the broker."""

    def __init__(self, service: str, broker: BrokerConfig, role: str,
                 contract: Contract | None = None, log: EventLog | None = None,
                 announce: bool = True) -> None:
        self.service = service
        self.role = role
        self.broker = broker
        self.contract = (contract or load_contract()).with_base(broker.base_topic)
        self.log = log or get_logger(service)
        self.connected = asyncio.Event()
        self.connection_changes: list[Callable[[bool], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subs: list[_Subscription] = []
        self._retained: dict[str, tuple[bytes, int]] = {}
        self._closing = False
        # `online` promises that the service listens: a service says it once it has subscribed
        self._announce = announce
        self._tasks: set[asyncio.Task[None]] = set()
        self._connects = 0
        suffix = f"{os.getpid()}-{next(_ids)}"
        self.client_id = f"ccsbus-{broker.base_topic.replace('/', '_')}-{service}-{suffix}"
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self._client.max_queued_messages_set(10000)
        self._client.reconnect_delay_set(
            min_delay=max(1, int(broker.reconnect_min)), max_delay=max(1, int(broker.reconnect_max))
        )
        if broker.username:
            self._client.username_pw_set(broker.username, broker.password or None)
        if broker.tls:
            self._client.tls_set(
                ca_certs=broker.tls_ca or None,
                certfile=broker.tls_cert or None,
                keyfile=broker.tls_key or None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            self._client.tls_insecure_set(broker.tls_insecure)
        self.status_topic = self.contract.full_topic(f"{service}/status")
        self._client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_socket_open = _no_delay

    # ------------------------------------------------------------------ lifecycle
    async def start(self, wait: float | None = 10.0) -> None:
        """Connect (retrying with backoff until the broker answers); wait for the first connect."""
        self._loop = asyncio.get_running_loop()
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=self.broker.keepalive)
        self._client.loop_start()
        if wait is not None:
            try:
                await asyncio.wait_for(self.connected.wait(), wait)
            except TimeoutError:
                self.log.warning("broker not reachable yet, retrying in the background",
                                 host=self.broker.host, port=self.broker.port)

    def announce_online(self) -> None:
        """Say `online` now (and after every reconnect): the service has made its subscriptions."""
        self._announce = True
        if self._client.is_connected():
            self._client.publish(self.status_topic, b"online", qos=1, retain=True)

    async def close(self) -> None:
        """Say `offline` ourselves (a clean exit sends no last will) and disconnect."""
        self._closing = True
        if self._client.is_connected():
            info = self._client.publish(self.status_topic, b"offline", qos=1, retain=True)
            deadline = time.monotonic() + 1.0
            while not info.is_published() and time.monotonic() < deadline and self._client.is_connected():
                await asyncio.sleep(0.01)
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        for task in list(self._tasks):
            task.cancel()

    # ------------------------------------------------------------------ publish
    def publish(self, path: str, value: Any, *, retain: bool | None = None,
                qos: int | None = None) -> None:
        """Publish a value on a contract topic (path below the base, e.g. `slac/state`).

        Refuses with PublishRefused when the contract does not give the topic to this service in
        this role, or the value does not fit the topic's payload.
        """
        if not self.contract.may_publish(self.service, path, self.role):
            raise PublishRefused(f"{self.service} ({self.role}) may not publish {path!r}")
        topic = self.contract.find(path)
        try:
            payload = topic.payload.encode(value)
        except PayloadError as exc:
            raise PublishRefused(f"{path}: {exc}") from None
        self._send(self.contract.full_topic(path), payload,
                   topic.qos if qos is None else qos,
                   topic.retained if retain is None else retain)

    def _send(self, full: str, payload: bytes, qos: int, retain: bool) -> None:
        if retain:
            self._retained[full] = (payload, qos)
        # paho queues the message while disconnected and sends it on reconnect
        self._client.publish(full, payload, qos=qos, retain=retain)

    def clear(self, path: str) -> None:
        """Remove a retained message: an empty retained payload (Home Assistant's "delete").

        Same permission check as publish; the empty payload is also what a reconnect re-sends.
        """
        if not self.contract.may_publish(self.service, path, self.role):
            raise PublishRefused(f"{self.service} ({self.role}) may not publish {path!r}")
        topic = self.contract.find(path)
        if not topic.retained:
            raise PublishRefused(f"{path}: not a retained topic, nothing to clear")
        self._send(self.contract.full_topic(path), b"", topic.qos, True)

    def publish_error(self, reason: str, topic: str | None = None, payload: bytes | None = None) -> None:
        """One JSON event on `<service>/error`; never raises (errors must not cascade)."""
        event: dict[str, Any] = {"service": self.service, "reason": reason, "time": time.time()}
        if topic is not None:
            event["topic"] = topic
        if payload is not None:
            event["payload"] = payload[:_ERROR_EXCERPT].decode("utf-8", "replace")
        try:
            self.publish(f"{self.service}/error", event)
        except PublishRefused as exc:  # pragma: no cover - the contract gives every service its error topic
            self.log.error("error topic refused", reason=str(exc))

    # ------------------------------------------------------------------ subscribe
    def subscribe(self, path: str, handler: Handler, *, raw: bool = False,
                  in_network_thread: bool = False) -> None:
        """Call `handler(path, value)` for each valid message on a contract topic.

        `path` is a contract path, possibly with `+`/`#` wildcards or `{placeholders}`. With
        raw=True the handler gets the bytes unvalidated (for tools that record everything).
        With in_network_thread=True a short, synchronous, self-contained handler runs right in the
        MQTT thread, saving the hop into asyncio (request/reply services on the latency path).
        """
        topic: Topic | None = None
        if "+" not in path and "#" not in path:
            topic = self.contract.find(path)
            mqtt_filter = topic.mqtt_filter() if "{" in path else path
        else:
            mqtt_filter = path
        full = mqtt_filter if topic is not None and topic.absolute else f"{self.contract.base}/{mqtt_filter}"
        self._subs.append(_Subscription(topic, full, handler, raw, in_network_thread))
        if self._client.is_connected():
            self._client.subscribe(full, qos=1)

    # ------------------------------------------------------------------ paho callbacks (paho thread)
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self.log.warning("broker refused connection", reason=str(reason))
            return
        # subscribe before saying online: whoever waits for `online` may send commands at once
        for sub in self._subs:
            client.subscribe(sub.mqtt_filter, qos=1)
        if self._announce:
            client.publish(self.status_topic, b"online", qos=1, retain=True)
        for full, (payload, qos) in self._retained.items():
            client.publish(full, payload, qos=qos, retain=True)
        self._connects += 1
        self._from_thread(self._set_connected, True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self._from_thread(self._set_connected, False)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        matched = [sub for sub in self._subs if mqtt.topic_matches_sub(sub.mqtt_filter, msg.topic)]
        direct = [sub for sub in matched if sub.in_network_thread]
        queued = [sub for sub in matched if not sub.in_network_thread]
        if direct:
            self._dispatch(msg.topic, payload, direct)
        if queued:  # a hop into asyncio costs a thread switch: only when someone there listens
            self._from_thread(self._dispatch, msg.topic, payload, queued)

    def _from_thread(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                loop.call_soon_threadsafe(fn, *args)

    # ------------------------------------------------------------------ asyncio side
    def _set_connected(self, up: bool) -> None:
        if up:
            if self._connects > 1:
                self.log.info("reconnected to broker", connects=self._connects)
            else:
                self.log.info("connected to broker", host=self.broker.host, port=self.broker.port)
            self.connected.set()
        else:
            if self.connected.is_set() and not self._closing:
                self.log.warning("lost broker connection, reconnecting")
            self.connected.clear()
        for callback in list(self.connection_changes):
            callback(up)

    def _dispatch(self, full: str, payload: bytes, subs: list[_Subscription]) -> None:
        """Hand one message to the subscriptions that matched it (in the thread they asked for)."""
        for sub in subs:
            path = self.contract.relative(full)
            if sub.raw:
                self._run(sub.handler, path, payload)
                continue
            try:
                topic = sub.topic or self.contract.find(path)
                value = topic.payload.decode(payload)
            except KeyError:
                self._reject(full, payload, "topic is not in the contract")
                continue
            except PayloadError as exc:
                self._reject(full, payload, str(exc))
                continue
            self._run(sub.handler, path, value)

    def _reject(self, full: str, payload: bytes, reason: str) -> None:
        excerpt = payload[:60].decode("utf-8", "replace")
        self.log.warning("rejected input", topic=full, payload=excerpt, reason=reason)
        self.publish_error(reason, topic=full, payload=payload)

    def _run(self, handler: Handler, path: str, value: Any) -> None:
        try:
            result = handler(path, value)
        except Exception as exc:  # a handler bug must not kill the service
            self.log.exception("handler failed", topic=path)
            self.publish_error(f"handler failed: {exc}", topic=path)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.log.error("handler failed", error=repr(exc))
            self.publish_error(f"handler failed: {exc}")


_ids = itertools.count(1)


def _no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Switch off Nagle's algorithm on the broker connection.

    Request/reply over the broker (the codec service) is a stream of small publishes; with Nagle each
    one waits for the broker's delayed ACK, ~40 ms, instead of well under a millisecond.
    """
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
