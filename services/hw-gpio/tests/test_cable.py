"""The simulated cable: an EVSE and a PEV hw process on one broker, each reading the other's state."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ccsbus.stack import ServiceProcess, stack_env
from ccsbus.testing.fixtures import Mosquitto, Probe

EVSE, PEV = "cable/evse", "cable/pev"


def hw_process(mosquitto: Mosquitto, role: str, base: str, peer: str,
               tmp_path: Path) -> ServiceProcess:
    env = stack_env(mosquitto.url, base, role, {
        "CCSBUS__HW__CABLE_PEER_BASE": peer,
        "CCSBUS__HW__SIM__START_SOC": "30",
        "CCSBUS__HW__SIM__SPEEDUP": "100",
        "CCSBUS__HW__SIM__ISOLATION_TIME": "0.3",
        "CCSBUS__HW__AUTO_PWM": "true",
        "CCSBUS_CONFIG": str(tmp_path / "none.yaml"),
    })
    proc = ServiceProcess("hw", env, log_file=str(tmp_path / f"hw-{role}.log"))
    proc.start()
    return proc


def json_where(topic: str, pred: Callable[[dict[str, Any]], bool]) -> Callable[[str, bytes], bool]:
    def match(t: str, p: bytes) -> bool:
        return t == topic and pred(json.loads(p))
    return match


def number_where(topic: str, pred: Callable[[float], bool]) -> Callable[[str, bytes], bool]:
    return lambda t, p: t == topic and pred(float(p))


@pytest.mark.slow
def test_cable_between_two_stacks(mosquitto: Mosquitto, probe_factory: Callable[[int], Probe],
                                  tmp_path: Path) -> None:
    probe = probe_factory(mosquitto.port)
    probe.subscribe("cable/#")
    evse = hw_process(mosquitto, "EVSE", EVSE, PEV, tmp_path)
    pev = hw_process(mosquitto, "PEV", PEV, EVSE, tmp_path)
    logs = lambda: "\n".join(p.read_text()[-2000:] for p in tmp_path.glob("hw-*.log"))  # noqa: E731
    try:
        probe.wait_payload(f"{EVSE}/hw/status", b"online", timeout=10)
        probe.wait_payload(f"{PEV}/hw/status", b"online", timeout=10)
        probe.publish(f"{PEV}/cpstate", "B", retain=True)
        probe.publish(f"{PEV}/lock_request", "lock", retain=True)
        # the charger measures the car's state B and answers with 5 % PWM; the car sees the 5 %
        probe.wait_for(json_where(f"{EVSE}/cp/state",
                                  lambda v: v["state"] == "B" and v["duty"] == 5), 5)
        probe.wait_for(json_where(f"{PEV}/cp/state",
                                  lambda v: v["state"] == "B" and v["duty"] == 5), 5)
        probe.publish(f"{PEV}/cpstate", "C", retain=True)
        probe.wait_for(json_where(f"{EVSE}/cp/state", lambda v: v["state"] == "C"), 5)

        # CableCheck and PreCharge on the charger side: the car's inlet sees the charger voltage
        probe.publish(f"{EVSE}/hw/cmd", json.dumps({"cmd": "cable_check"}))
        probe.wait_for(json_where(f"{EVSE}/hw/state", lambda v: v["isolation"] == "valid"), 5)
        probe.publish(f"{EVSE}/target_voltage", "330", retain=True)
        probe.publish(f"{EVSE}/target_current", "40", retain=True)
        probe.wait_for(number_where(f"{PEV}/inlet_voltage", lambda v: abs(v - 330) < 5), 5)
        # the car's contactors are still open: no current whatever the request says
        probe.clear()
        probe.wait_for(number_where(f"{EVSE}/charger_current", lambda v: v == 0), 3)
        with pytest.raises(TimeoutError):
            probe.wait_for(number_where(f"{EVSE}/charger_current", lambda v: v > 1), 1.0)

        probe.publish(f"{PEV}/relay_request", "on", retain=True)
        probe.wait_for(json_where(f"{PEV}/hw/state", lambda v: v["contactors"] == "closed"), 5)
        probe.wait_for(number_where(f"{EVSE}/charger_current", lambda v: abs(v - 40) < 1), 5)
        probe.wait_for(json_where(f"{PEV}/hw/state",
                                  lambda v: abs(v["present_current"] - 40) < 1), 5)
        probe.wait_for(number_where(f"{PEV}/soc", lambda v: v > 30.05), 5)  # energy arrives

        # the car stops: CP B, relay off; its contactors open once the charger's current is gone
        probe.publish(f"{EVSE}/target_current", "0", retain=True)
        probe.publish(f"{PEV}/relay_request", "off", retain=True)
        probe.wait_for(json_where(f"{PEV}/hw/state", lambda v: v["contactors"] == "open"), 5)
        probe.wait_for(number_where(f"{EVSE}/charger_current", lambda v: v == 0), 5)
    except (TimeoutError, AssertionError):
        print(logs())
        raise
    finally:
        evse.stop()
        pev.stop()
