"""Our EVCC against our SECC through every service: v2g (EVSE) + v2g (PEV) + the exi codec service
and the simulated power stage on both sides, each its own process, on a real mosquitto.

No SLAC here (`v2g.wait_for_link: false`, SDP and TCP on ::1): the session runs from SDP to
SessionStop, and the car's hardware order is checked from the recorded topics.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ccsbus_exi", reason="the EXI binding ccsbus_exi is not built")

pytestmark = pytest.mark.slow


def _helpers() -> Any:
    name = "ccsbus_v2g_tests_evcc_helpers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("evcc_helpers.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


H = _helpers()


@pytest.mark.parametrize("protocol", ["din", "iso2"])
def test_our_evcc_charges_at_our_secc(mosquitto: Any, tmp_path: Path, protocol: str) -> None:
    run = H.run_stacks(mosquitto.port, tmp_path, protocol, evcc={"max_charge_time": 3.0})
    end = run.end
    assert end["state"] == "Finished", end
    assert end["protocol"] == protocol and end["last_error"] is None
    pev = run.pev_events
    assert H.check_shutdown_order(pev) == ""
    hw = [e for e in H.hw_events(pev) if e[0] != "current"]
    assert hw == [("lock_request", "lock"), ("cpstate", "C"), ("relay_request", "on"),
                  ("cpstate", "B"), ("relay_request", "off"), ("lock_request", "unlock")]
    # energy flowed: the car's power stage measured the charge current while charging
    currents = [float(v) for t, v in H.hw_events(pev) if t == "current"]
    assert max(currents) > 10
    messages = [json.loads(p) for t, p in pev if t == "v2g/message"]
    rx = [m["name"] for m in messages if m["direction"] == "rx"]
    for name in ("SessionSetupRes", "CableCheckRes", "PreChargeRes", "PowerDeliveryRes",
                 "CurrentDemandRes", "WeldingDetectionRes", "SessionStopRes"):
        assert name in rx
    # the charger's side saw the same session and the car's requests
    evse_sessions = [json.loads(p) for t, p in run.evse_events if t == "v2g/session" and p]
    assert any(s.get("session_id") == end["session_id"] for s in evse_sessions)
    assert any(t == "target_current" for t, _ in run.evse_events)
    # the pyPLC-compatible outputs of the car side carry the charger's values
    assert any(t == "charger_max_voltage" for t, _ in pev)
    assert any(t == "charger_current" and float(p) > 10 for t, p in pev if p)
