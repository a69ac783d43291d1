"""Request → reply latency through the codec service over loopback mosquitto (p50 / p99).

Starts mosquitto on a free port and `ccsbus run exi` as its own process, then sends N decode and N encode
requests one at a time (as the v2g service does) and prints the percentiles.

    .venv/bin/python services/exi-codec/bench/bench_service.py [--count 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

VECTORS = {
    # DIN CurrentDemandReq / Res as real cars and chargers sent them
    "din": Path(__file__).resolve().parents[3].parent / "shared" / "vectors" / "din.jsonl",
}
FALLBACK = ("din", "809a02004080c1014181c210b981601fc0080c0104c0601e4070a00050200000")


def pick_messages() -> list[tuple[str, str]]:
    path = VECTORS["din"]
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        chosen = [(r["schema"], r["hex"]) for r in rows if r["message"].startswith("CurrentDemand")]
        if chosen:
            return chosen[:2]
    return [FALLBACK]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000, help="requests per operation")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "m.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n")
        broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = {**os.environ, "CCSBUS__BROKER__URL": f"mqtt://127.0.0.1:{port}"}
        time.sleep(0.3)
        service = subprocess.Popen([sys.executable, "-m", "ccsbus", "run", "exi"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            return run(port, args.count)
        finally:
            service.send_signal(signal.SIGTERM)
            service.wait(5)
            broker.terminate()
            broker.wait(5)


def run(port: int, count: int) -> int:
    got = threading.Event()
    online = threading.Event()
    last: dict[str, object] = {}

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/status"):
            if msg.payload == b"online":
                online.set()
            return
        last.update(json.loads(msg.payload))
        got.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.on_message = on_message
    # like the services' own connections: no Nagle delay on small request messages
    client.on_socket_open = lambda _c, _u, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.connect("127.0.0.1", port)
    client.subscribe([("pyPlc/exi/reply/bench", 0), ("pyPlc/exi/status", 1)])
    client.loop_start()
    if not online.wait(15):
        print("the exi service did not come online", file=sys.stderr)
        return 1
    messages = pick_messages()
    results: dict[str, list[float]] = {"decode": [], "encode": []}
    trees = []
    for schema, hexstr in messages:
        request = {"id": 0, "reply_to": "exi/reply/bench", "op": "decode", "schema": schema, "hex": hexstr}
        got.clear()
        client.publish("pyPlc/exi/request", json.dumps(request))
        got.wait(5)
        trees.append((schema, last["tree"]))
    for op in ("decode", "encode"):
        for i in range(count):
            schema, hexstr = messages[i % len(messages)]
            body: dict[str, object] = {"id": i, "reply_to": "exi/reply/bench", "op": op, "schema": schema}
            if op == "decode":
                body["hex"] = hexstr
            else:
                body["tree"] = trees[i % len(trees)][1]
            payload = json.dumps(body)
            got.clear()
            start = time.perf_counter()
            client.publish("pyPlc/exi/request", payload)
            if not got.wait(5) or last.get("id") != i or not last.get("ok"):
                print(f"{op} {i}: no good reply: {last}", file=sys.stderr)
                return 1
            results[op].append((time.perf_counter() - start) * 1000)
    client.loop_stop()
    print(f"codec service over loopback mosquitto, {count} requests each, one in flight (ms)")
    print(f"{'op':<8}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'mean':>8}")
    for op, values in results.items():
        print(f"{op:<8}{pct(values, 0.5):8.3f}{pct(values, 0.9):8.3f}{pct(values, 0.99):8.3f}"
              f"{max(values):8.3f}{statistics.fmean(values):8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
