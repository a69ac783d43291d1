"""pytest fixtures shared by every service's tests: real brokers and a probe client.

`mosquitto` starts a real mosquitto on a free loopback port (skips naming mosquitto when it is not
installed); `embedded_broker` runs the stack's own amqtt broker in a thread; `probe` connects a plain
paho client to watch and drive topics from the test.
"""

from __future__ import annotations

import asyncio
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ccsbus.broker import EmbeddedBroker, free_port

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared"


def shared_dir(*parts: str) -> Path:
    """A folder of the read-only inputs beside the clone, or a skip naming it."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared inputs are not beside this clone)")
    return path


def wait_port(port: int, timeout: float = 5.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class Mosquitto:
    port: int
    workdir: Path
    extra_conf: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n"
            f"log_dest file {self.workdir / 'mosquitto.log'}\n{self.extra_conf}"
        )
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


def _mosquitto_exe() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    if _mosquitto_exe() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    with tempfile.TemporaryDirectory(prefix="ccsbus-mosq-") as tmp:
        broker = Mosquitto(port=free_port(), workdir=Path(tmp))
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


@dataclass
class ThreadedBroker:
    """The embedded broker running on its own event loop in a thread, for synchronous tests."""

    broker: EmbeddedBroker
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.broker.url

    @property
    def port(self) -> int:
        return self.broker.port

    def start(self) -> None:
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.broker.start(), self.loop).result(10)
        wait_port(self.broker.port)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.broker.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread is not None:
            self.thread.join(5)


@pytest.fixture
def embedded_broker() -> Iterator[ThreadedBroker]:
    tb = ThreadedBroker(EmbeddedBroker(port=free_port()))
    tb.start()
    try:
        yield tb
    finally:
        tb.stop()


@pytest.fixture(params=["mosquitto", "embedded"])
def any_broker(request: pytest.FixtureRequest) -> Any:
    """Each test that takes it runs against both brokers."""
    return request.getfixturevalue("mosquitto" if request.param == "mosquitto" else "embedded_broker")


class Probe:
    """A plain MQTT client for tests: publish raw payloads, wait for messages on any topic."""

    def __init__(self, port: int, client_id: str = "") -> None:
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.seen: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311)
        self.client.on_message = self._on_message
        self._connected = threading.Event()
        self.client.on_connect = lambda *a: self._connected.set()
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        if not self._connected.wait(5):
            raise TimeoutError("probe could not connect")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        item = (msg.topic, bytes(msg.payload), bool(msg.retain))
        with self._lock:
            self.seen.append(item)
        self.messages.put(item)

    def subscribe(self, topic: str, qos: int = 1) -> None:
        result, _mid = self.client.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)

    def wait_for(self, predicate: Callable[[str, bytes], bool], timeout: float = 5.0) -> tuple[str, bytes]:
        """The first message (seen already or arriving) that satisfies the predicate."""
        deadline = time.monotonic() + timeout
        with self._lock:
            for topic, payload, _ in self.seen:
                if predicate(topic, payload):
                    return topic, payload
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching message")
            try:
                topic, payload, _ = self.messages.get(timeout=left)
            except queue.Empty:
                raise TimeoutError("no matching message") from None
            if predicate(topic, payload):
                return topic, payload

    def wait_payload(self, topic: str, payload: bytes | None = None, timeout: float = 5.0) -> bytes:
        return self.wait_for(lambda t, p: t == topic and (payload is None or p == payload), timeout)[1]

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()
        while not self.messages.empty():
            self.messages.get_nowait()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def probe_factory() -> Iterator[Callable[[int], Probe]]:
    probes: list[Probe] = []

    def make(port: int) -> Probe:
        p = Probe(port)
        probes.append(p)
        return p

    yield make
    for p in probes:
        p.close()
