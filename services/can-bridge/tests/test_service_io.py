"""The CAN bridge service on real buses: python-can `virtual` in-process and `udp_multicast`
between processes, a real mosquitto for the topics."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import can
import pytest

from ccsbus.config import load_config
from ccsbus.lifecycle import serve
from ccsbus.stack import ServiceProcess, stack_env
from ccsbus_can import chademo
from ccsbus_can.chademo import VehicleFault, VehicleStatus
from ccsbus_can.service import SPEC, CanSettings


class SimCar:
    """A CHAdeMO car on a CAN bus: sends 0x100/0x101/0x102 every 100 ms, records 0x108/0x109."""

    def __init__(self, bus: can.BusABC, current: int = 120) -> None:
        self.bus = bus
        self.current = current
        self.running = True
        self.received: list[can.Message] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True),
                         threading.Thread(target=self._recv, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _send(self) -> None:
        while not self._stop.is_set():
            if self.running:
                frames = [
                    (0x100, chademo.encode_vehicle_limits(chademo.VehicleLimits(450, 100))),
                    (0x101, chademo.encode_vehicle_times(chademo.VehicleTimes(3600, 40, 62_000))),
                    (0x102, chademo.encode_vehicle_request(chademo.VehicleRequest(
                        2, 396, self.current, VehicleFault(0), VehicleStatus.CHARGING_ENABLED, 63))),
                ]
                for can_id, data in frames:
                    self.bus.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=False))
            self._stop.wait(0.1)

    def _recv(self) -> None:
        while not self._stop.is_set():
            msg = self.bus.recv(0.1)
            if msg is not None:
                self.received.append(msg)

    def frames(self, can_id: int) -> list[can.Message]:
        return [m for m in list(self.received) if m.arbitration_id == can_id]

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        self.bus.shutdown()


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError("condition not reached")


@pytest.fixture
def car_channel() -> Iterator[str]:
    yield f"ccsbus-test-{random.randrange(1 << 30)}"


def check_bridge_behaviour(probe: Any, base: str, car: SimCar) -> None:
    """What both tests check: topics from the car, clamped charger frames, stop on silence."""
    assert probe.wait_payload(f"{base}/target_voltage", b"396") == b"396"
    assert probe.wait_payload(f"{base}/target_current", b"120") == b"120"
    assert probe.wait_payload(f"{base}/soc", b"63") == b"63"
    assert probe.wait_payload(f"{base}/battery_capacity", b"62000") == b"62000"
    # charger values reach 0x108/0x109; 300 A does not fit a byte: 255 and one clamp event
    probe.publish(f"{base}/charger_max_voltage", "500", retain=True)
    probe.publish(f"{base}/charger_max_current", "300", retain=True)
    probe.publish(f"{base}/charger_voltage", "395", retain=True)
    probe.publish(f"{base}/charger_current", "118", retain=True)

    def limits_seen() -> bool:
        frames = car.frames(0x108)
        return bool(frames) and chademo.decode_charger_limits(bytes(frames[-1].data)) \
            .available_voltage == 500 and chademo.decode_charger_state(
                bytes(car.frames(0x109)[-1].data)).present_current == 118

    wait_until(limits_seen)
    assert chademo.decode_charger_limits(bytes(car.frames(0x108)[-1].data)).available_current == 255
    event = json.loads(probe.wait_for(lambda t, p: t == f"{base}/can/event"
                                      and json.loads(p)["event"] == "clamped")[1])
    assert event["field"] == "available_current" and event["sent"] == 255
    # the cycle: about ten 0x109 frames a second
    start = len(car.frames(0x109))
    time.sleep(1.0)
    assert 7 <= len(car.frames(0x109)) - start <= 13
    # the car goes silent: within about a second, current 0 and a stop request
    car.running = False
    silent_at = time.monotonic()
    stop = json.loads(probe.wait_payload(f"{base}/v2g/cmd", None, 3.0))
    assert stop == {"cmd": "stop", "value": "vehicle silent"}
    assert 0.8 <= time.monotonic() - silent_at <= 2.0
    assert probe.wait_payload(f"{base}/target_current", b"0", 1.0) == b"0"
    clamps = [p for t, p, _ in probe.seen
              if t == f"{base}/can/event" and json.loads(p)["event"] == "clamped"]
    assert len(clamps) == 1


def test_service_in_process_on_a_virtual_bus(mosquitto: Any, probe_factory: Any,
                                             car_channel: str) -> None:
    base = "bench/can1"
    probe = probe_factory(mosquitto.port)
    probe.subscribe(f"{base}/#")
    stack = load_config(env={"CCSBUS__BROKER__URL": mosquitto.url,
                             "CCSBUS__BROKER__BASE_TOPIC": base, "CCSBUS__ROLE": "PEV"})
    settings = replace(CanSettings(), interface="virtual", channel=car_channel)
    car = SimCar(can.Bus(interface="virtual", channel=car_channel))
    result: list[BaseException] = []

    async def main(stopping: asyncio.Event) -> None:
        await serve(SPEC, stack, settings, stopping)

    loop = asyncio.new_event_loop()
    stopping = asyncio.Event()
    thread = threading.Thread(target=lambda: _run(loop, main(stopping), result), daemon=True)
    thread.start()
    try:
        probe.wait_payload(f"{base}/can/status", b"online")
        check_bridge_behaviour(probe, base, car)
        state = json.loads(probe.wait_for(
            lambda t, p: t == f"{base}/can/state" and json.loads(p)["stop_requested"])[1])
        assert state["stop_reason"] == "vehicle silent" and state["profiles"] == ["chademo"]
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join(5)
        car.close()
    assert not result, result
    assert probe.wait_payload(f"{base}/can/status", b"offline") == b"offline"


def _run(loop: asyncio.AbstractEventLoop, coro: Any, errors: list[BaseException]) -> None:
    try:
        loop.run_until_complete(coro)
    except BaseException as exc:  # reported to the test thread
        errors.append(exc)
    finally:
        loop.close()


def test_service_process_on_udp_multicast(mosquitto: Any, probe_factory: Any,
                                          tmp_path: Any) -> None:
    from can.interfaces.udp_multicast import UdpMulticastBus

    pytest.importorskip("msgpack", reason="python-can udp_multicast needs msgpack")
    base = "bench/can2"
    port = random.randrange(40000, 60000)
    group = UdpMulticastBus.DEFAULT_GROUP_IPv4
    probe = probe_factory(mosquitto.port)
    probe.subscribe(f"{base}/#")
    env = stack_env(mosquitto.url, base, "PEV", {
        "CCSBUS__CAN__INTERFACE": "udp_multicast", "CCSBUS__CAN__CHANNEL": group,
        "CCSBUS__CAN__OPTIONS__PORT": str(port)})
    proc = ServiceProcess("can", env, log_file=str(tmp_path / "can.log"))
    car = SimCar(can.Bus(interface="udp_multicast", channel=group, port=port))
    proc.start()
    try:
        probe.wait_payload(f"{base}/can/status", b"online", 10.0)
        check_bridge_behaviour(probe, base, car)
    finally:
        code = proc.stop()
        car.close()
    assert code == 0, (tmp_path / "can.log").read_text()[-2000:]


class InThread:
    """The service in its own event loop thread, stopped like SIGTERM would."""

    def __init__(self, url: str, base: str, role: str, settings: CanSettings) -> None:
        stack = load_config(env={"CCSBUS__BROKER__URL": url, "CCSBUS__BROKER__BASE_TOPIC": base,
                                 "CCSBUS__ROLE": role})
        self.loop = asyncio.new_event_loop()
        self.stopping = asyncio.Event()
        self.errors: list[BaseException] = []
        coro = serve(SPEC, stack, settings, self.stopping)
        self.thread = threading.Thread(target=lambda: _run(self.loop, coro, self.errors), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(5)


def test_board_frames_on_an_evse_stack(mosquitto: Any, probe_factory: Any, car_channel: str) -> None:
    base = "bench/can3"
    probe = probe_factory(mosquitto.port)
    probe.subscribe(f"{base}/#")
    for path, value in (("soc", "44"), ("target_voltage", "410"), ("target_current", "120"),
                        ("charger_voltage", "405"), ("charger_current", "118"),
                        ("evccid", "D83ADD123456"), ("enabled", "1")):
        probe.publish(f"{base}/{path}", value, retain=True)
    board_bus = can.Bus(interface="virtual", channel=car_channel)
    service = InThread(mosquitto.url, base, "EVSE",
                       replace(CanSettings(), interface="virtual", channel=car_channel,
                               board_frames=True))
    received: list[can.Message] = []
    try:
        probe.wait_payload(f"{base}/can/status", b"online")
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            msg = board_bus.recv(0.1)
            if msg is not None:
                received.append(msg)
    finally:
        service.stop()
        board_bus.shutdown()
    assert not service.errors
    values = [m for m in received if m.arbitration_id == 0x679]
    assert 30 <= len(values) <= 45  # 100 ms cycle over about 4 s
    assert bytes(values[-1].data) == bytes.fromhex("9a01" "7800" "9501" "7600")
    info = [m for m in received if m.arbitration_id == 0x678]
    assert bytes(info[-1].data[:2]) == bytes([0x06, 44])  # power flowing, enabled; SoC 44
    macs = [m for m in received if m.arbitration_id == 0x67A]
    assert 1 <= len(macs) <= 2 and bytes(macs[-1].data[:6]) == bytes.fromhex("d83add123456")
    state = json.loads(probe.wait_payload(f"{base}/can/state", None, 1))
    assert state["profiles"] == ["board"]


def test_bad_frames_and_missing_interface_are_reported(mosquitto: Any, probe_factory: Any,
                                                       car_channel: str) -> None:
    base = "bench/can4"
    probe = probe_factory(mosquitto.port)
    probe.subscribe(f"{base}/#")
    car = can.Bus(interface="virtual", channel=car_channel)
    service = InThread(mosquitto.url, base, "PEV",
                       replace(CanSettings(), interface="virtual", channel=car_channel))
    try:
        probe.wait_payload(f"{base}/can/state", None)  # the CAN side is up once the state comes
        car.send(can.Message(arbitration_id=0x102, data=b"\x02\x90", is_extended_id=False))
        error = json.loads(probe.wait_for(lambda t, p: t == f"{base}/can/error")[1])
        assert "0x102" in error["reason"] and error["topic"] == "can:0x102"
        assert error["payload"] == "0290"
    finally:
        service.stop()
        car.shutdown()
    assert not service.errors
    # a CAN interface that is not there: reported, retried, and the service still stops cleanly
    base = "bench/can5"
    probe.subscribe(f"{base}/#")
    service = InThread(mosquitto.url, base, "PEV",
                       replace(CanSettings(), interface="socketcan", channel="ccsbusnone0"))
    try:
        error = json.loads(probe.wait_for(lambda t, p: t == f"{base}/can/error", 5)[1])
        assert "cannot open CAN socketcan:ccsbusnone0" in error["reason"]
    finally:
        started = time.monotonic()
        service.stop()
    assert not service.errors and time.monotonic() - started < 2.0
