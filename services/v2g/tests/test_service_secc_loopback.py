"""The SECC over real sockets on ::1 with a real broker: SDP, TCP, codec, MQTT in and out.

A scripted car (services/v2g/bench/evcc_driver.py) runs whole DIN and ISO-2 sessions; the tests
check what reached the car and what the SECC published.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ccsbus.bus import Bus
from ccsbus.config import BrokerConfig
from ccsbus.testing.fixtures import Mosquitto, Probe
from ccsbus_v2g import sdp, v2gtp
from ccsbus_v2g.codec import CodecMode
from ccsbus_v2g.evse_role import EvseRole
from ccsbus_v2g.service import SeccTimers, V2gSettings

pytest.importorskip("ccsbus_exi", reason="the EXI binding ccsbus_exi is not built")

BENCH = Path(__file__).resolve().parents[1] / "bench"
BASE = "t_secc"


def load_driver() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ccsbus_v2g_bench_driver", BENCH / "evcc_driver.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


driver = load_driver()


def settings(**kw: Any) -> V2gSettings:
    base = V2gSettings(interface="lo", sdp_port=0, wait_for_link=False, standalone=True,
                       codec=CodecMode.INPROCESS)
    return replace(base, **kw)


async def with_secc(broker: Mosquitto, cfg: V2gSettings,
                    body: Callable[[EvseRole], Awaitable[None]]) -> None:
    bus = Bus("v2g", BrokerConfig(url=broker.url, base_topic=BASE), "EVSE")
    await bus.start()
    role = EvseRole(bus, cfg)
    stopping = asyncio.Event()
    task = asyncio.create_task(role.run(stopping, wait_for_link=False))
    try:
        for _ in range(200):
            if role.sdp_server is not None:
                break
            await asyncio.sleep(0.01)
        assert role.sdp_server is not None, "SECC did not start"
        await body(role)
    finally:
        stopping.set()
        await asyncio.wait_for(task, 5)
        await bus.close()


def messages(probe: Probe, topic: str) -> list[Any]:
    return [json.loads(p) for t, p, _ in probe.seen if t == topic]


@pytest.mark.parametrize("protocol", ["din", "iso2"])
def test_full_session_over_loopback(mosquitto: Mosquitto, probe_factory: Any, protocol: str) -> None:
    probe = probe_factory(mosquitto.port)
    probe.subscribe(f"{BASE}/#")

    async def body(role: EvseRole) -> None:
        assert role.sdp_server is not None
        host, port = await driver.sdp_discover("::1", role.sdp_server.bound_port)
        assert host == "::1" and 49152 <= port <= 65535
        result = await driver.run_session(host, port, protocol, cycles=20)
        assert len(result.current_demand_ms) == 20
        assert result.names[-1] == "SessionStopRes"
        for _ in range(100):
            if role.fsm_state == "SessionStopped":
                break
            await asyncio.sleep(0.02)
        assert role.fsm_state == "SessionStopped" and role.last_error is None

    asyncio.run(with_secc(mosquitto, settings(), body))
    probe.wait_payload(f"{BASE}/fsm_state", b"SessionStopped")
    probe.wait_for(lambda t, p: t == f"{BASE}/v2g/message" and b'"SessionStopRes"' in p)
    sent = [m for m in messages(probe, f"{BASE}/v2g/message") if m["direction"] == "tx"]
    assert sent[0]["name"] == "supportedAppProtocolRes"
    assert any(m["name"] == "CurrentDemandRes" and m["latency_ms"] >= 0 for m in sent)
    sessions = messages(probe, f"{BASE}/v2g/session")
    assert any(s["protocol"] == protocol for s in sessions)
    assert probe.wait_payload(f"{BASE}/evccid") == b"0A1B2C3D4E5F"
    assert float(probe.wait_payload(f"{BASE}/target_voltage")) == 380.0
    commands = messages(probe, f"{BASE}/hw/cmd")
    # standalone: no isolation check is asked of hw, but the contactor commands still go out
    assert {"cmd": "cable_check"} not in commands
    assert commands.index({"cmd": "contactor", "value": "close"}) < commands.index(
        {"cmd": "contactor", "value": "open"})


def test_session_through_the_codec_service(mosquitto: Mosquitto, probe_factory: Any) -> None:
    """The production path: every EXI message goes through `ccsbus run exi` over the broker."""
    from ccsbus.lifecycle import serve
    from ccsbus_exi.service import SPEC as EXI_SPEC

    async def run() -> None:
        from ccsbus.config import LogConfig, Role, StackConfig

        exi_stack = StackConfig(role=Role.EVSE, broker=BrokerConfig(url=mosquitto.url, base_topic=BASE),
                                log=LogConfig(), sections={}, source="test")
        stopping = asyncio.Event()
        exi_task = asyncio.create_task(serve(EXI_SPEC, exi_stack, exi_stack.section("exi", EXI_SPEC.settings),
                                             stopping))
        await asyncio.sleep(0.5)

        async def body(role: EvseRole) -> None:
            assert role.server is not None
            result = await driver.run_session("::1", role.server.port, "iso2", cycles=30)
            assert len(result.current_demand_ms) == 30 and result.names[-1] == "SessionStopRes"

        try:
            await with_secc(mosquitto, settings(codec=CodecMode.MQTT), body)
        finally:
            stopping.set()
            await asyncio.wait_for(exi_task, 5)

    asyncio.run(run())


def test_new_connection_replaces_the_old_one(mosquitto: Mosquitto, probe_factory: Any) -> None:
    async def body(role: EvseRole) -> None:
        assert role.server is not None
        first = driver.Driver("din")
        await first.connect("::1", role.server.port)
        await first.handshake()
        second = await driver.run_session("::1", role.server.port, "din", cycles=2)
        assert second.names[-1] == "SessionStopRes"
        assert first.reader is not None
        try:
            rest = await asyncio.wait_for(first.reader.read(100), 3)
        except ConnectionResetError:
            rest = b""
        assert rest == b""  # the SECC reset the old connection
        await first.close()
        await asyncio.sleep(0.2)
        assert role.fsm_state == "SessionStopped" and role.last_error is None  # the old one did not interfere

    asyncio.run(with_secc(mosquitto, settings(), body))


def test_protocol_choice_honours_enabled(mosquitto: Mosquitto, probe_factory: Any) -> None:
    async def body(role: EvseRole) -> None:
        assert role.sdp_server is not None
        host, port = await driver.sdp_discover("::1", role.sdp_server.bound_port)
        with pytest.raises(driver.DriverError, match="refused"):
            await driver.run_session(host, port, "iso2", cycles=1)

    asyncio.run(with_secc(mosquitto, settings(protocols=["din"]), body))


def test_bad_v2gtp_header_closes_connection(mosquitto: Mosquitto, probe_factory: Any) -> None:
    probe = probe_factory(mosquitto.port)
    probe.subscribe(f"{BASE}/v2g/error")

    async def body(role: EvseRole) -> None:
        assert role.server is not None
        reader, writer = await asyncio.open_connection("::1", role.server.port)
        writer.write(bytes.fromhex("02fd800100000002") + b"\x80\x00")
        data = await asyncio.wait_for(reader.read(100), 3)
        assert data == b""  # closed without an answer
        writer.close()

    asyncio.run(with_secc(mosquitto, settings(), body))
    _, payload = probe.wait_for(lambda t, p: t == f"{BASE}/v2g/error" and b"V2GTP" in p)
    assert b"bad protocol version" in payload


def test_oversize_and_garbage_exi(mosquitto: Mosquitto, probe_factory: Any) -> None:
    async def body(role: EvseRole) -> None:
        assert role.server is not None
        for frame in (v2gtp.encode(b"\x80" * 64)[:4] + (70000).to_bytes(4, "big"),
                      v2gtp.encode(b"\x12\x34\x56")):
            reader, writer = await asyncio.open_connection("::1", role.server.port)
            writer.write(frame)
            assert await asyncio.wait_for(reader.read(100), 3) == b""
            writer.close()
        assert role.last_error is not None and "undecodable" in role.last_error

    asyncio.run(with_secc(mosquitto, settings(max_payload=65536), body))


def test_sequence_timeout_ends_session(mosquitto: Mosquitto, probe_factory: Any) -> None:
    probe = probe_factory(mosquitto.port)
    probe.subscribe(f"{BASE}/hw/cmd")
    cfg = settings(timers=SeccTimers(V2G_SECC_Sequence_Timeout=0.3,
                                     V2G_SECC_CommunicationSetup_Timeout=5.0))

    async def body(role: EvseRole) -> None:
        assert role.server is not None
        d = driver.Driver("din")
        await d.connect("::1", role.server.port)
        await d.handshake()
        await d.request("SessionSetupReq", {"EVCCID": "0A1B2C3D4E5F"})
        assert d.reader is not None
        assert await asyncio.wait_for(d.reader.read(100), 3) == b""  # SECC gave up
        assert role.last_error is not None and "V2G_SECC_Sequence_Timeout" in role.last_error
        await d.close()

    asyncio.run(with_secc(mosquitto, cfg, body))
    probe.wait_payload(f"{BASE}/hw/cmd", b'{"cmd":"safe_shutdown"}')


def test_fault_command_and_user_stop(mosquitto: Mosquitto, probe_factory: Any) -> None:
    probe = probe_factory(mosquitto.port)

    async def body(role: EvseRole) -> None:
        assert role.server is not None
        for _ in range(50):  # repeated: the role's subscription may not be active yet
            probe.publish(f"{BASE}/v2g/cmd", json.dumps({"cmd": "fault", "value": 9}))
            await asyncio.sleep(0.1)
            if role.fault_case is not None:
                break
        assert role.fault_case is not None and role.fault_case.number == 9
        with pytest.raises(driver.DriverError, match="CurrentDemandRes FAILED"):
            await driver.run_session("::1", role.server.port, "din", cycles=20)
        probe.publish(f"{BASE}/v2g/cmd", json.dumps({"cmd": "fault", "value": "none"}))
        probe.publish(f"{BASE}/enabled", "0")
        for _ in range(100):
            if role.fault_case is None and not role.enabled:
                break
            await asyncio.sleep(0.02)
        d = driver.Driver("iso2")
        await d.connect("::1", role.server.port)
        await d.handshake()
        await d.request("SessionSetupReq", {"EVCCID": "0A1B2C3D4E5F"})
        assert role.inputs.enabled is False
        await d.close()

    asyncio.run(with_secc(mosquitto, settings(), body))


def test_car_ignoring_a_user_stop_loses_the_connection(mosquitto: Mosquitto, probe_factory: Any) -> None:
    probe = probe_factory(mosquitto.port)
    probe.subscribe(f"{BASE}/hw/cmd")
    cfg = settings(timers=SeccTimers(stop_timeout=0.5))

    async def body(role: EvseRole) -> None:
        assert role.server is not None
        d = driver.Driver("din")
        await d.connect("::1", role.server.port)
        task = asyncio.create_task(d.run(cycles=100000, cycle_pause=0.02))
        for _ in range(300):
            if role.fsm_state == "Charging":
                break
            await asyncio.sleep(0.02)
        assert role.fsm_state == "Charging"
        started = asyncio.get_running_loop().time()
        probe.publish(f"{BASE}/v2g/cmd", json.dumps({"cmd": "stop"}))
        with pytest.raises((driver.DriverError, ConnectionError)):
            await asyncio.wait_for(task, 10)
        assert 0.4 < asyncio.get_running_loop().time() - started < 5
        assert role.last_error is not None and "ignored the stop request" in role.last_error
        await d.close()

    asyncio.run(with_secc(mosquitto, cfg, body))
    probe.wait_payload(f"{BASE}/hw/cmd", b'{"cmd":"safe_shutdown"}')


def test_missing_interface_is_reported_and_service_keeps_running(mosquitto: Mosquitto,
                                                                  probe_factory: Any) -> None:
    probe = probe_factory(mosquitto.port)
    probe.subscribe(f"{BASE}/v2g/error")

    async def run() -> None:
        bus = Bus("v2g", BrokerConfig(url=mosquitto.url, base_topic=BASE), "EVSE")
        await bus.start()
        role = EvseRole(bus, settings(interface="nosuch0"))
        stopping = asyncio.Event()
        task = asyncio.create_task(role.run(stopping, wait_for_link=False))
        for _ in range(100):
            if role.last_error:
                break
            await asyncio.sleep(0.02)
        assert not task.done() and role.last_error is not None and "nosuch0" in role.last_error
        stopping.set()
        await asyncio.wait_for(task, 5)
        await bus.close()

    asyncio.run(run())
    _, payload = probe.wait_for(lambda t, p: t == f"{BASE}/v2g/error" and b"nosuch0" in p)
    assert b"cannot start the SECC" in payload


@pytest.mark.parametrize(("fault", "expect"), [
    ("tcp_reset", "reset"),
    ("malformed_exi", "garbage"),
    ("bad_v2gtp_header", "header"),
])
def test_transport_faults_reach_the_car(mosquitto: Mosquitto, probe_factory: Any, fault: str,
                                        expect: str) -> None:
    """The 6th CurrentDemandRes is broken the way the fault names; the first five are fine."""
    import ccsbus_exi

    async def body(role: EvseRole) -> None:
        assert role.server is not None
        d = driver.Driver("din")
        await d.connect("::1", role.server.port)
        with pytest.raises(Exception) as info:
            await d.run(cycles=10)
        await d.close()
        assert d.result.names.count("CurrentDemandRes") == 5
        exc = info.value
        if expect == "reset":
            assert isinstance(exc, ConnectionError | driver.DriverError), repr(exc)
        elif expect == "garbage":
            assert isinstance(exc, ccsbus_exi.ExiError), repr(exc)
        else:
            assert isinstance(exc, v2gtp.V2gtpError) and exc.reason.name == "BAD_VERSION", repr(exc)

    asyncio.run(with_secc(mosquitto, settings(fault=fault), body))


def test_session_id_change_fault(mosquitto: Mosquitto, probe_factory: Any) -> None:
    async def body(role: EvseRole) -> None:
        assert role.server is not None
        result = await driver.run_session("::1", role.server.port, "iso2", cycles=8)
        demand_ids = [sid for name, sid in zip(result.names, result.session_ids, strict=True)
                      if name == "CurrentDemandRes"]
        assert len(set(demand_ids[:5])) == 1 and demand_ids[5] != demand_ids[0]
        assert demand_ids[6:] == [demand_ids[0]] * 2

    asyncio.run(with_secc(mosquitto, settings(fault="18"), body))


class FakeHw:
    """Plays the hw service on the broker: isolation check, contactors, a supply that follows."""

    def __init__(self, port: int, confirm_contactors: bool = True) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.confirm = confirm_contactors
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{BASE}/hw/cmd", qos=1)
        self.client.subscribe(f"{BASE}/target_voltage", qos=1)
        self.client.loop_start()

    def _state(self, **fields: Any) -> None:
        self.client.publish(f"{BASE}/hw/state", json.dumps({**fields, "time": time.time()}), qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.topic.endswith("target_voltage"):
            client.publish(f"{BASE}/charger_voltage", msg.payload, qos=1)
            return
        cmd = json.loads(msg.payload)
        if cmd["cmd"] == "cable_check":
            self._state(isolation="ongoing")
            self._state(isolation="valid")
        elif cmd["cmd"] == "contactor" and self.confirm:
            self._state(contactors="closed" if cmd["value"] == "close" else "open")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.mark.parametrize("protocol", ["din", "iso2"])
def test_session_with_hw_feedback(mosquitto: Mosquitto, probe_factory: Any, protocol: str) -> None:
    probe = probe_factory(mosquitto.port)
    probe.subscribe(f"{BASE}/hw/cmd")
    hw = FakeHw(mosquitto.port)

    async def body(role: EvseRole) -> None:
        assert role.server is not None
        await asyncio.sleep(0.3)  # the role's subscriptions reach the broker
        result = await driver.run_session("::1", role.server.port, protocol, cycles=5)
        assert result.names[-1] == "SessionStopRes"
        assert result.names.count("CableCheckRes") >= 2  # Ongoing first, then Finished
        await asyncio.sleep(0.2)
        assert role.fsm_state == "SessionStopped" and role.last_error is None

    try:
        asyncio.run(with_secc(mosquitto, settings(standalone=False), body))
    finally:
        hw.close()
    probe.wait_payload(f"{BASE}/hw/cmd", b'{"cmd":"contactor","value":"open"}')
    commands = messages(probe, f"{BASE}/hw/cmd")
    assert commands == [{"cmd": "cable_check"}, {"cmd": "contactor", "value": "close"},
                        {"cmd": "contactor", "value": "open"}]


def test_unconfirmed_contactors_fail_power_delivery(mosquitto: Mosquitto, probe_factory: Any) -> None:
    probe = probe_factory(mosquitto.port)
    probe.subscribe(f"{BASE}/hw/cmd")
    hw = FakeHw(mosquitto.port, confirm_contactors=False)
    cfg = settings(standalone=False, timers=SeccTimers(contactor_timeout=0.3))

    async def body(role: EvseRole) -> None:
        assert role.server is not None
        await asyncio.sleep(0.3)
        with pytest.raises(driver.DriverError, match="PowerDeliveryRes FAILED"):
            await driver.run_session("::1", role.server.port, "iso2", cycles=5)
        assert role.last_error is not None and "contactors not closed" in role.last_error

    try:
        asyncio.run(with_secc(mosquitto, cfg, body))
    finally:
        hw.close()
    probe.wait_payload(f"{BASE}/hw/cmd", b'{"cmd":"safe_shutdown"}')


def test_sdp_server_ignores_garbage() -> None:
    async def run() -> None:
        server = sdp.SdpServer("lo", 50000, udp_port=0)
        await server.start()
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.sendto(v2gtp.encode(b"\x10\x00", v2gtp.PAYLOAD_EXI), ("::1", server.bound_port))
        await asyncio.sleep(0.1)
        sock.close()
        server.close()
        assert server.requests == 0

    asyncio.run(run())


@pytest.mark.parametrize(("cp", "fails"), [("B", True), ("C", False)])
def test_power_delivery_needs_the_car_in_state_c(mosquitto: Mosquitto, probe_factory: Any, cp: str,
                                                 fails: bool) -> None:
    """CPState_Detection_Timeout: no contactor close for a car whose CP still says B."""
    probe = probe_factory(mosquitto.port)
    probe.subscribe(f"{BASE}/hw/cmd")
    hw = FakeHw(mosquitto.port)
    hw.client.publish(f"{BASE}/cp/state", json.dumps({"state": cp, "duty": 5, "time": time.time()}),
                      qos=1, retain=True)
    cfg = settings(standalone=False, timers=SeccTimers(CPState_Detection_Timeout=0.3))

    async def body(role: EvseRole) -> None:
        assert role.server is not None
        await asyncio.sleep(0.3)
        if fails:
            with pytest.raises(driver.DriverError, match="PowerDeliveryRes FAILED"):
                await driver.run_session("::1", role.server.port, "din", cycles=3)
            assert role.last_error is not None and "CPState_Detection_Timeout" in role.last_error
        else:
            result = await driver.run_session("::1", role.server.port, "din", cycles=3)
            assert result.names[-1] == "SessionStopRes"

    try:
        asyncio.run(with_secc(mosquitto, cfg, body))
    finally:
        hw.client.publish(f"{BASE}/cp/state", b"", qos=1, retain=True)
        hw.close()
    commands = messages(probe, f"{BASE}/hw/cmd")
    assert ({"cmd": "contactor", "value": "close"} in commands) is not fails
