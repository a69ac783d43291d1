"""CAN bridge timing on a python-can `virtual` bus: 0x109 period and car-silence-to-stop latency.

    .venv/bin/python services/can-bridge/bench/cycle.py --seconds 10 --broker mqtt://127.0.0.1:1883

Needs a running broker (mosquitto). Prints the 0x109 inter-frame period (mean, p50, p99, max, in ms)
and how long after the car's last frame the stop request (`v2g/cmd`) arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import threading
import time
from dataclasses import replace

import can
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ccsbus.config import load_config
from ccsbus.lifecycle import serve
from ccsbus_can import chademo
from ccsbus_can.service import SPEC, CanSettings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    args = parser.parse_args()
    base, channel = "bench/cancycle", f"bench-{time.time_ns()}"
    stack = load_config(env={"CCSBUS__BROKER__URL": args.broker, "CCSBUS__BROKER__BASE_TOPIC": base,
                             "CCSBUS__ROLE": "PEV"})
    settings = replace(CanSettings(), interface="virtual", channel=channel)
    stopping = asyncio.Event()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(SPEC, stack, settings, stopping),),
                              daemon=True)
    stop_at: list[float] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: stop_at.append(time.monotonic()) if json.loads(m.payload) else None
    host, port = args.broker.removeprefix("mqtt://").split(":")
    client.connect(host, int(port))
    client.subscribe(f"{base}/v2g/cmd", 1)
    client.loop_start()
    thread.start()
    car = can.Bus(interface="virtual", channel=channel)
    request = chademo.encode_vehicle_request(chademo.VehicleRequest(
        2, 400, 100, chademo.VehicleFault(0), chademo.VehicleStatus.CHARGING_ENABLED, 50))
    arrivals: list[float] = []
    end = time.monotonic() + args.seconds
    next_send = time.monotonic()
    last_sent = 0.0
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_send:
            car.send(can.Message(arbitration_id=0x102, data=request, is_extended_id=False))
            last_sent = now
            next_send += 0.1
        msg = car.recv(max(0.0, min(next_send - time.monotonic(), 0.01)))
        if msg is not None and msg.arbitration_id == 0x109:
            arrivals.append(time.monotonic())
    deadline = time.monotonic() + 3
    while not stop_at and time.monotonic() < deadline:
        car.recv(0.01)
    loop.call_soon_threadsafe(stopping.set)
    thread.join(5)
    client.loop_stop()
    car.shutdown()
    periods = sorted((b - a) * 1000 for a, b in itertools.pairwise(arrivals[5:]))
    if not periods:
        print("no 0x109 frames received")
        return 1
    print(f"0x109 frames: {len(arrivals)} in {args.seconds:g} s")
    print(f"period ms: mean {statistics.mean(periods):.2f}  p50 {periods[len(periods) // 2]:.2f}  "
          f"p99 {periods[int(len(periods) * 0.99)]:.2f}  max {periods[-1]:.2f}")
    if stop_at:
        print(f"stop request {stop_at[0] - last_sent:.3f} s after the car's last frame (timeout 1.0 s)")
    else:
        print("no stop request seen")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
