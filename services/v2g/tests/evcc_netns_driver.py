"""Runs our car side inside a network namespace and writes what happened as JSON.

Started by test_evcc_interop.py through `ip netns exec`: a mosquitto of its own (the namespace
cannot reach the host's loopback), the PEV role on the veth interface with SDP to ff02::1, a fake
car hardware and a recorder; the result file holds the final v2g/session and every topic event.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any


def load_helpers() -> Any:
    name = "ccsbus_v2g_tests_evcc_helpers"
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("evcc_helpers.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interface", required=True)
    parser.add_argument("--protocol", choices=["din", "iso2"], required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--battery-voltage", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    from ccsbus.broker import free_port
    from ccsbus.testing.fixtures import Mosquitto

    h = load_helpers()
    base = "ccsbus/pev"
    result: dict[str, Any] = {"end": None, "events": [], "error": None}
    with tempfile.TemporaryDirectory(prefix="ccsbus-netns-") as tmp:
        broker = Mosquitto(port=free_port(), workdir=Path(tmp))
        broker.start()
        recorder = h.Recorder(broker.port, base)
        hardware = h.FakeCarHardware(broker.port, base)
        try:
            recorder.publish("battery_voltage", f"{args.battery_voltage:g}", retain=True)
            recorder.publish("soc", "40", retain=True)
            recorder.publish("target_current", "10", retain=True)
            evcc = replace(h.fast_settings(15118, sdp_target="ff02::1", sdp_interval=0.25,
                                           protocols=[args.protocol], max_charge_time=2.0,
                                           current_demand_cycle=0.1,
                                           precharge_voltage_source="charger"),
                           # the peer's Java codec answers in 100-250 ms, up to 1 s in ISO-2,
                           # and 2 s and more on a loaded 2-core machine: this test is about
                           # the protocol, so the car waits longer than the standard's timers
                           timers=h.EvccTimers(V2G_EVCC_Msg_Timeout=5.0,
                                               V2G_EVCC_Msg_Timeout_CurrentDemand=5.0))
            settings = h.PevOnlySettings(evcc=evcc, interface=args.interface)
            result["end"] = asyncio.run(h.run_pev_role(broker.port, base, settings, recorder,
                                                       timeout=args.timeout))
        except Exception as exc:  # the test reads the reason from the file
            result["error"] = repr(exc)
        finally:
            result["events"] = recorder.events()
            recorder.close()
            hardware.close()
            broker.stop()
    Path(args.out).write_text(json.dumps(result))
    return 0 if result["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
