"""A stand-in for the v2g service: drives hw into CurrentDemand, says CHARGING, then just waits.

Run as `python fake_v2g.py <broker-url> <base-topic> <EVSE|PEV> <battery-volts>`; it connects as
service "v2g", so the broker publishes its last will `v2g/status offline` when it is killed.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from ccsbus.bus import Bus
from ccsbus.config import BrokerConfig


async def wait_until(cond: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            print("TIMEOUT", flush=True)
            raise SystemExit(3)
        await asyncio.sleep(0.02)


async def main() -> None:
    url, base, role, battery = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    bus = Bus("v2g", BrokerConfig(url=url, base_topic=base, keepalive=2), role)
    seen: dict[str, Any] = {}
    bus.subscribe("hw/state", lambda p, v: seen.update(state=v))
    bus.subscribe("hw/status", lambda p, v: seen.update(hw=v))
    if role == "PEV":
        bus.subscribe("inlet_voltage", lambda p, v: seen.update(inlet=v))
    await bus.start()
    # hw says `online` when it connects, but listens only once its run() subscribed; its first
    # hw/state comes after that, so that is the moment commands are heard
    await wait_until(lambda: seen.get("hw") == "online" and "state" in seen)
    state = lambda: seen.get("state", {})  # noqa: E731
    if role == "EVSE":
        bus.publish("hw/cmd", {"cmd": "plug", "value": "C"})
        bus.publish("hw/cmd", {"cmd": "cable_check"})
        await wait_until(lambda: state().get("isolation") == "valid")
        bus.publish("target_voltage", battery)  # PreCharge
        bus.publish("target_current", 2)
        await wait_until(lambda: abs(state().get("present_voltage", 0) - battery) < 5)
        bus.publish("hw/cmd", {"cmd": "contactor", "value": "close"})  # PowerDelivery start
        bus.publish("target_current", 100)  # CurrentDemand
    else:
        bus.publish("cpstate", "B")
        bus.publish("lock_request", "lock")
        await asyncio.sleep(0.2)
        bus.publish("cpstate", "C")
        await wait_until(lambda: abs(seen.get("inlet", 0) - battery) < 5)  # PreCharge done
        bus.publish("relay_request", "on")
    await wait_until(lambda: state().get("contactors") == "closed"
                     and state().get("present_current", 0) > 50)
    print("CHARGING", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
