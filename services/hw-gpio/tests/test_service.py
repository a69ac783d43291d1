"""The hw service as a process: bad input is reported and survived, the mqtt backend only watches,
a dangerous config is refused at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ccsbus.stack import ServiceProcess, stack_env
from ccsbus.testing.fixtures import Mosquitto, Probe


def start_hw(mosquitto: Mosquitto, role: str, base: str, tmp_path: Path,
             extra: dict[str, str] | None = None) -> ServiceProcess:
    env = stack_env(mosquitto.url, base, role,
                    {"CCSBUS_CONFIG": str(tmp_path / "none.yaml"), **(extra or {})})
    proc = ServiceProcess("hw", env, log_file=str(tmp_path / "hw.log"))
    proc.start()
    return proc


def error_with(base: str, text: str) -> Callable[[str, bytes], bool]:
    return lambda t, p: t == f"{base}/hw/error" and text in json.loads(p)["reason"]


@pytest.mark.slow
def test_bad_commands_are_reported_and_survived(mosquitto: Mosquitto,
                                                probe_factory: Callable[[int], Probe],
                                                tmp_path: Path) -> None:
    base = "svc/evse"
    probe = probe_factory(mosquitto.port)
    probe.subscribe(f"{base}/#")
    hw = start_hw(mosquitto, "EVSE", base, tmp_path, {"CCSBUS__HW__AUTO_PWM": "true"})
    try:
        probe.wait_payload(f"{base}/hw/status", b"online", timeout=10)
        probe.wait_payload(f"{base}/hw/state", timeout=5)  # published once hw listens
        cmd = f"{base}/hw/cmd"
        probe.publish(cmd, json.dumps({"cmd": "pwm", "value": 500}))
        probe.wait_for(error_with(base, "pwm value 500"), 5)
        probe.publish(cmd, json.dumps({"cmd": "fault", "value": "meteor"}))
        probe.wait_for(error_with(base, "unknown fault 'meteor'"), 5)
        probe.publish(cmd, json.dumps({"cmd": "teleport"}))  # not in the contract's enum
        probe.wait_for(error_with(base, "cmd"), 5)
        probe.publish(cmd, b"{not json")
        probe.wait_for(error_with(base, "invalid JSON"), 5)
        probe.publish(f"{base}/target_current", b"lots")
        probe.wait_for(error_with(base, "not a decimal number"), 5)
        # a refused request is a safety event, not an error: closing without isolation check
        probe.publish(cmd, json.dumps({"cmd": "contactor", "value": "close"}))
        _, payload = probe.wait_for(lambda t, p: t == f"{base}/hw/safety", 5)
        event = json.loads(payload)
        assert event["event"] == "refused" and "lock" in event["reason"]
        # still alive and obeying: a car plugs in (sim) and the PWM goes to 5 %
        probe.publish(cmd, json.dumps({"cmd": "plug", "value": "B"}))
        probe.wait_for(lambda t, p: t == f"{base}/cp/state"
                       and json.loads(p)["state"] == "B" and json.loads(p)["duty"] == 5, 5)
        assert hw.alive()
    finally:
        hw.stop()


@pytest.mark.slow
def test_mqtt_backend_watches_external_hardware(mosquitto: Mosquitto,
                                                probe_factory: Callable[[int], Probe],
                                                tmp_path: Path) -> None:
    base = "svc/pev"
    probe = probe_factory(mosquitto.port)
    probe.subscribe(f"{base}/#")
    hw = start_hw(mosquitto, "PEV", base, tmp_path, {"CCSBUS__HW__BACKEND": "mqtt"})

    def state(pred: Callable[[dict[str, object]], bool]) -> None:
        probe.wait_for(lambda t, p: t == f"{base}/hw/state" and pred(json.loads(p)), 5)

    try:
        probe.wait_payload(f"{base}/hw/status", b"online", timeout=10)
        probe.wait_payload(f"{base}/hw/state", timeout=5)  # published once hw listens
        # the external board reports its measurements on the user-facing topics
        probe.publish(f"{base}/battery_voltage", "398", retain=True)
        probe.publish(f"{base}/inlet_voltage", "120", retain=True)
        probe.publish(f"{base}/lock_request", "lock", retain=True)
        state(lambda s: s["backend"] == "mqtt" and s.get("inlet_voltage") == 120)
        probe.publish(f"{base}/relay_request", "on", retain=True)
        _, payload = probe.wait_for(lambda t, p: t == f"{base}/hw/safety", 5)
        assert "differs from battery" in json.loads(payload)["reason"]  # judged, reported
        probe.publish(f"{base}/inlet_voltage", "396", retain=True)
        probe.publish(f"{base}/relay_request", "on", retain=True)
        state(lambda s: s["contactors"] == "closed")
        probe.publish(f"{base}/charger_current", "50", retain=True)
        probe.publish(f"{base}/relay_request", "off", retain=True)
        state(lambda s: s["contactors"] == "opening" and s["present_current"] == 50)
        probe.publish(f"{base}/charger_current", "0", retain=True)
        state(lambda s: s["contactors"] == "open")
        # watch-only: the values on the hardware's own topics are only ever the board's
        inlet = [p for t, p, _ in probe.seen if t == f"{base}/inlet_voltage"]
        assert set(inlet) <= {b"120", b"396"}, inlet
    finally:
        hw.stop()


def test_uncalibrated_dieter_board_is_a_config_error(tmp_path: Path) -> None:
    env = stack_env("mqtt://127.0.0.1:9", "x", "PEV", {
        "CCSBUS__HW__BACKEND": "dieter", "CCSBUS_CONFIG": str(tmp_path / "none.yaml")})
    proc = subprocess.run([sys.executable, "-m", "ccsbus", "run", "hw"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "hw.adc_volts_per_count" in proc.stderr


def test_unknown_hw_key_is_a_config_error(tmp_path: Path) -> None:
    env = stack_env("mqtt://127.0.0.1:9", "x", "PEV", {
        "CCSBUS__HW__SAFETY__UNLOCK_VOLTS": "60", "CCSBUS_CONFIG": str(tmp_path / "none.yaml")})
    proc = subprocess.run([sys.executable, "-m", "ccsbus", "run", "hw"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "hw.safety.unlock_volts" in proc.stderr and "unlock_voltage" in proc.stderr
