"""The PEV role end to end over real sockets and a real broker, against a scripted charger.

The v2g service runs in this process in the PEV role (SDP to ::1, TCP, in-process EXI codec); a
plain MQTT client plays the car's hardware (current falls when CP goes to B, contactors follow
relay_request) and records every topic, so the hardware order is checked from the bus.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ccsbus.config import BrokerConfig, LogConfig, Role, StackConfig, setting
from ccsbus.lifecycle import ServiceSpec, serve
from ccsbus_v2g import pev_role
from ccsbus_v2g.codec import CodecMode
from ccsbus_v2g.evcc import EvccSettings, EvccTimers

pytest.importorskip("ccsbus_exi", reason="the EXI binding ccsbus_exi is not built")


def load_helpers() -> Any:
    name = "ccsbus_v2g_tests_evcc_helpers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("evcc_helpers.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


H = load_helpers()


@dataclass(frozen=True)
class PevOnlySettings:
    """The part of the v2g settings the PEV role reads."""

    evcc: EvccSettings = setting(default_factory=EvccSettings)
    wait_for_link: bool = False
    interface: str = "lo"
    codec: CodecMode = CodecMode.INPROCESS


class FakeCarHardware:
    """Answers the car's requests as the PEV hardware would: CP B stops the current, relay."""

    def __init__(self, port: int, base: str) -> None:
        self.base = base
        self.state: dict[str, Any] = {"backend": "test", "contactors": "open",
                                      "lock": "unlocked", "present_current": 0.0}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        ready = threading.Event()

        def on_connect(*_: Any) -> None:
            for path in ("cpstate", "relay_request", "lock_request"):
                self.client.subscribe(f"{base}/{path}", qos=1)
            ready.set()

        self.client.on_connect = on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        assert ready.wait(5)

    def _send(self) -> None:
        import time

        self.state["time"] = time.time()
        self.client.publish(f"{self.base}/hw/state", json.dumps(self.state), qos=1, retain=True)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        path = msg.topic[len(self.base) + 1:]
        value = msg.payload.decode()
        if path == "cpstate":
            # the charger follows CP: current flows in C once the contactors are closed
            on = value == "C" and self.state["contactors"] == "closed"
            self.state["present_current"] = 20.0 if on else 0.0
        elif path == "relay_request":
            self.state["contactors"] = "closed" if value == "on" else "open"
            if value == "on":
                self.state["present_current"] = 20.0
        elif path == "lock_request":
            self.state["lock"] = "locked" if value == "lock" else "unlocked"
        self._send()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Bench:
    port: int
    base: str = "ccsbus/pev"
    recorder: Any = None
    hardware: FakeCarHardware | None = None
    extra: list[Any] = field(default_factory=list)


@pytest.fixture
def bench(mosquitto: Any) -> Iterator[Bench]:
    b = Bench(mosquitto.port)
    b.recorder = H.Recorder(mosquitto.port, b.base)
    b.hardware = FakeCarHardware(mosquitto.port, b.base)
    yield b
    b.recorder.close()
    b.hardware.close()


def fast_settings(udp_port: int, **changes: Any) -> EvccSettings:
    timers = replace(EvccTimers(), V2G_EVCC_Msg_Timeout=1.0)
    base = replace(EvccSettings(), sdp_target="::1", sdp_port=udp_port, sdp_interval=0.1,
                   max_charge_time=0.6, current_demand_cycle=0.05, evccid="0A0B0C0D0E0F",
                   current_off_timeout=1.0, contactor_timeout=0.5, timers=timers)
    return replace(base, **changes)


def run_pev(bench: Bench, secc: Any, settings_changes: dict[str, Any] | None = None,
            during: Any = None, timeout: float = 20.0) -> dict[str, Any]:
    """Start the scripted SECC and the PEV role; return the final v2g/session payload."""

    async def main() -> dict[str, Any]:
        await secc.start()
        settings = PevOnlySettings(evcc=fast_settings(secc.udp_port, **(settings_changes or {})))
        stack = StackConfig(role=Role.PEV,
                            broker=BrokerConfig(url=f"mqtt://127.0.0.1:{bench.port}",
                                                base_topic=bench.base),
                            log=LogConfig(), sections={}, source="test")
        spec = ServiceSpec(name="v2g", settings=PevOnlySettings, run=pev_role.run)
        stopping = asyncio.Event()
        service = asyncio.create_task(serve(spec, stack, settings, stopping))
        try:
            if during is not None:
                await during(bench)
            end = await asyncio.to_thread(bench.recorder.wait_session_end, timeout)
            await asyncio.sleep(0.2)  # let the last topics arrive at the recorder
            return end  # type: ignore[no-any-return]
        finally:
            stopping.set()
            await service
            await secc.stop()

    return asyncio.run(main())


@pytest.mark.parametrize("protocol", ["din", "iso2"])
def test_pev_role_charges_and_stops_normally(bench: Bench, protocol: str) -> None:
    bench.recorder.publish("battery_voltage", "360", retain=True)
    bench.recorder.publish("soc", "40", retain=True)
    bench.recorder.publish("target_current", "30", retain=True)
    secc = H.ScriptedSecc(protocol=protocol)
    end = run_pev(bench, secc)
    assert end["state"] == "Finished", end
    assert end["protocol"] == protocol
    assert end["last_error"] is None
    rec = bench.recorder
    # every request of the DC sequence reached the charger, in order
    names = list(dict.fromkeys(n for n in secc.charger.received))
    assert names[0] == "SessionSetupReq" and names[-1] == "SessionStopReq"
    assert "CurrentDemandReq" in names and "WeldingDetectionReq" in names
    hw = [e for e in H.hw_events(rec.events()) if e[0] != "current"]
    assert hw == [("lock_request", "lock"), ("cpstate", "C"), ("relay_request", "on"),
                  ("cpstate", "B"), ("relay_request", "off"), ("lock_request", "unlock")]
    assert H.check_shutdown_order(rec.events()) == ""
    fsm = rec.values("fsm_state")
    assert fsm[0] == "SDP" and fsm[-1] == "Finished"
    assert "WaitCurrentDemandRes" in fsm and "WaitWeldingDetectionRes" in fsm
    # the charger's values reach the pyPLC-compatible topics
    assert float(rec.values("charger_max_voltage")[-1]) == 500
    assert float(rec.values("charger_current")[-1]) == 20
    messages = [json.loads(m) for m in rec.values("v2g/message")]
    tx = [m["name"] for m in messages if m["direction"] == "tx"]
    assert tx[0] == "supportedAppProtocolReq" and tx[1] == "SessionSetupReq"
    demand_body = next(m["tree"] for m in messages if m["name"] == "CurrentDemandReq")
    target = demand_body["V2G_Message"]["Body"]["CurrentDemandReq"]["EVTargetCurrent"]
    assert target["Value"] * 10.0 ** target["Multiplier"] == 30
    assert all(m["latency_ms"] is not None for m in messages if m["direction"] == "rx")


def test_pev_role_user_stop_ends_the_session(bench: Bench) -> None:
    secc = H.ScriptedSecc(protocol="din")

    async def stop_while_charging(b: Bench) -> None:
        await asyncio.to_thread(
            lambda: b.recorder.client and _wait_value(b.recorder, "fsm_state",
                                                      "WaitCurrentDemandRes"))
        b.recorder.publish("v2g/cmd", json.dumps({"cmd": "stop"}))

    end = run_pev(bench, secc, {"max_charge_time": 0.0}, during=stop_while_charging)
    assert end["state"] == "Finished", end
    assert H.check_shutdown_order(bench.recorder.events()) == ""


def test_pev_role_without_a_charger_gives_up_after_sdp(bench: Bench) -> None:
    """SDP to a port nobody answers: the standard's 50 requests, then the safe state."""
    secc = H.ScriptedSecc(protocol="din")
    end = run_pev(bench, secc, {"sdp_port": 9, "sdp_interval": 0.01, "sdp_max_requests": 5})
    assert end["state"] == "SafeShutdown"
    assert "SDP" in end["last_error"]
    errors = bench.recorder.values("v2g/error")
    assert any("safe shutdown" in e for e in errors)


def _wait_value(recorder: Any, path: str, value: str, timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value in recorder.values(path):
            return True
        time.sleep(0.02)
    raise TimeoutError(f"{path} never was {value}")
