"""The forwarder on the EVSE stack of a whole simulated DIN session (`ccsbus sim`, every service its own
process) against the local SmartEVSE stand-in: the car's rising SoC reaches the wallbox."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from ccsbus.stack import ServiceProcess, stack_env


@pytest.mark.slow
def test_soc_of_a_simulated_session_reaches_smartevse(mosquitto: Any, fake_factory: Any,
                                                      tmp_path: Any) -> None:
    wallbox = fake_factory()
    env = stack_env(mosquitto.url, "ccsbus/evse", "EVSE", {
        "CCSBUS__SOC__ENDPOINT": wallbox.url, "CCSBUS__SOC__MIN_INTERVAL": "0.2"})
    soc = ServiceProcess("soc", env, log_file=str(tmp_path / "soc.log"))
    soc.start()
    try:
        sim = subprocess.run(
            [sys.executable, "-m", "ccsbus", "sim", "--broker", mosquitto.url, "--plain",
             "--start-soc", "30", "--target-soc", "60", "--out", str(tmp_path / "run"),
             "--timeout", "120"],
            capture_output=True, text=True, timeout=180)
    finally:
        code = soc.stop()
    assert sim.returncode == 0, sim.stdout[-3000:] + sim.stderr[-2000:]
    assert code == 0, (tmp_path / "soc.log").read_text()[-2000:]
    socs = [int(r.params["current_soc"]) for r in wallbox.requests]
    assert socs, "no request reached the wallbox"
    assert socs == sorted(socs), "SoC went backwards"
    assert socs[0] <= 32 and socs[-1] >= 59
    assert wallbox.max_in_flight == 1
    assert all(r.method == "POST" and r.path == "/ev_state" for r in wallbox.requests)
    assert wallbox.state.energy_capacity > 0  # the car's EVEnergyCapacity, in Wh
    # EVEnergyRequest and FullSOC travel in v2g/session: the wallbox hears them too
    assert wallbox.state.energy_request > 0
    assert any(r.params.get("full_soc") not in (None, "-1") for r in wallbox.requests)
