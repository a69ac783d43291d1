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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

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


@dataclass
class Bench:
    port: int
    base: str = "ccsbus/pev"
    recorder: Any = None
    hardware: Any = None
    extra: list[Any] = field(default_factory=list)


@pytest.fixture
def bench(mosquitto: Any) -> Iterator[Bench]:
    b = Bench(mosquitto.port)
    b.recorder = H.Recorder(mosquitto.port, b.base)
    b.hardware = H.FakeCarHardware(mosquitto.port, b.base)
    yield b
    b.recorder.close()
    b.hardware.close()


def run_pev(bench: Bench, secc: Any, settings_changes: dict[str, Any] | None = None,
            during: Any = None, timeout: float = 20.0,
            wait_for_link: bool = False) -> dict[str, Any]:
    """Start the scripted SECC and the PEV role; return the final v2g/session payload."""

    async def main() -> dict[str, Any]:
        await secc.start()
        settings = H.PevOnlySettings(
            evcc=H.fast_settings(secc.udp_port, **(settings_changes or {})),
            wait_for_link=wait_for_link)
        try:
            return await H.run_pev_role(
                bench.port, bench.base, settings, bench.recorder,
                None if during is None else (lambda: during(bench)), timeout)
        finally:
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


def test_pev_role_follows_the_plc_link(bench: Bench) -> None:
    """With wait_for_link, a session starts per link-up; a link-down mid-charge is a fault."""
    secc = H.ScriptedSecc(protocol="iso2")
    link = "slac/link"

    async def plug_cycle(b: Bench) -> None:
        rec = b.recorder
        await asyncio.sleep(0.5)
        assert rec.values("fsm_state") == []  # nothing happens before the link is up
        rec.publish(link, json.dumps({"link": "up", "interface": "lo", "time": 1.0}), retain=True)
        await asyncio.to_thread(_wait_value, rec, "fsm_state", "WaitCurrentDemandRes")
        rec.publish(link, json.dumps({"link": "down", "time": 2.0}), retain=True)
        first = await asyncio.to_thread(rec.wait_session_end, 10.0)
        assert first["state"] == "SafeShutdown"
        assert first["last_error"] == "PLC link down"
        rec.messages.clear()
        rec.publish(link, json.dumps({"link": "up", "interface": "lo", "time": 3.0}), retain=True)

    end = run_pev(bench, secc, {"max_charge_time": 0.5}, during=plug_cycle, wait_for_link=True)
    assert end["state"] == "Finished", end
    assert secc.connections == 2
    assert H.check_shutdown_order(bench.recorder.events()) == ""


def test_pev_role_survives_a_bug_in_the_session(bench: Bench, monkeypatch: Any) -> None:
    """An exception inside the session still runs the safe shutdown and the service lives."""
    secc = H.ScriptedSecc(protocol="din")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("simulated bug in the current demand builder")

    from ccsbus_v2g.evcc import din

    monkeypatch.setattr(din.Din, "current_demand", broken)
    end = run_pev(bench, secc)
    assert end["state"] == "SafeShutdown"
    assert "simulated bug" in end["last_error"]
    assert H.check_shutdown_order(bench.recorder.events()) == ""
    assert "offline" not in bench.recorder.values("v2g/status")[:-1]
