"""A service of the charging session dies mid-charge: our EVCC still ends in the safe order.

Both stacks run as processes on a real mosquitto; once the car is in the CurrentDemand loop one
process is killed (SIGKILL, no goodbye): the charger's v2g service (the car sees the TCP
connection drop) or the car's own codec service (the car's codec requests go unanswered).
"""

from __future__ import annotations

import importlib.util
import sys
import time
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


def kill_after_cycles(key: str) -> Any:
    def action(stacks: Any) -> None:
        time.sleep(0.5)  # a few CurrentDemand cycles with current flowing
        stacks.procs[key].kill()

    return action


@pytest.mark.parametrize(("key", "reason"), [
    ("EVSE-v2g", r"connection lost|closed the connection"),
    ("PEV-exi", r"codec service|no reply from the codec"),
])
def test_a_killed_service_mid_charge_ends_in_the_safe_order(mosquitto: Any, tmp_path: Path,
                                                           key: str, reason: str) -> None:
    import re

    run = H.run_stacks(mosquitto.port, tmp_path, "din", evcc={"max_charge_time": 30.0},
                       at_state=("WaitCurrentDemandRes", kill_after_cycles(key)))
    assert run.end["state"] == "SafeShutdown", run.end
    assert re.search(reason, run.end["last_error"] or ""), run.end["last_error"]
    assert H.check_shutdown_order(run.pev_events) == ""
    currents = [float(v) for t, v in H.hw_events(run.pev_events) if t == "current"]
    assert max(currents) > 10  # it was charging when the service died
