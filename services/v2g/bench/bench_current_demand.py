"""CurrentDemand latency of our SECC (v2g + exi services over mosquitto) and of iso15118's SECC.

    sudo .venv/bin/python services/v2g/bench/bench_current_demand.py [--cycles 1000] [--protocol din]

Both SECCs run in one network namespace, the scripted car (evcc_driver.py) in another, joined by a
veth pair, so both see the same link, SDP by multicast and the same driver. Figures:
- ours, inside the SECC: CurrentDemandReq complete at the socket -> CurrentDemandRes written,
  through both codec round trips over mosquitto (latency_ms of v2g/message);
- both, at the car: request written -> response read (adds the link and the car's own reads).
Without root (no namespaces) only ours runs, on ::1. Needs the ccsbus_exi binding; iso15118 is
installed into <repo>/.venv-peer on first use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(HERE))

import evcc_driver  # noqa: E402
import peer  # noqa: E402

PY = str(REPO / ".venv" / "bin" / "python")
MQTT_PORT = 18831

RECORDER = """
import sys, json, paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
out = open(sys.argv[2], "a", buffering=1)
c = mqtt.Client(CallbackAPIVersion.VERSION2)
c.on_connect = lambda *a: c.subscribe(sys.argv[3] + "/v2g/message")
def on_message(cl, u, m):
    d = json.loads(m.payload)
    if d.get("direction") == "tx" and d.get("name") == "CurrentDemandRes":
        parts = [d.get(k, 0.0) for k in ("queued_ms", "decode_ms", "handle_ms", "encode_ms")]
        out.write(" ".join(str(x) for x in [d["latency_ms"], *parts]) + "\\n")
c.on_message = on_message
while True:
    try:
        c.connect("127.0.0.1", int(sys.argv[1])); break
    except OSError:
        import time; time.sleep(0.05)
c.loop_forever()
"""


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return {"n": len(ordered), "p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99),
            "max": ordered[-1], "mean": statistics.fmean(ordered)}


def drive_main(args: argparse.Namespace) -> int:
    """Driver mode (run inside the car's namespace): one session, JSON to stdout."""
    async def go() -> dict[str, Any]:
        host, port = await evcc_driver.sdp_discover(args.sdp_target, interface=args.interface or None,
                                                    tries=80)
        result = await evcc_driver.run_session(host, port, args.protocol, args.cycles,
                                               args.cycle_pause)
        return {"secc": f"{host} {port}", "current_demand_ms": result.current_demand_ms,
                "messages": result.messages}
    print(json.dumps(asyncio.run(go())))
    return 0


class Procs:
    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                env={**os.environ, **(env or {})})
        self.procs.append(proc)
        return proc

    def wait_log(self, name: str, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        path = self.logdir / f"{name}.log"
        while time.monotonic() < deadline:
            if path.exists() and needle in path.read_text(errors="replace"):
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()


def run_driver(ns: list[str], target: str, interface: str, protocol: str, cycles: int,
               pause: float) -> dict[str, Any]:
    out = subprocess.run([*ns, PY, str(Path(__file__).resolve()), "--drive", "--sdp-target", target,
                          "--interface", interface, "--protocol", protocol, "--cycles", str(cycles),
                          "--cycle-pause", str(pause)],
                         capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        raise RuntimeError(f"driver failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench_ours(procs: Procs, ns_secc: list[str], ns_car: list[str], interface: str, target: str,
               car_if: str, protocol: str, cycles: int, pause: float, codec: str = "mqtt"
               ) -> tuple[dict[str, Any], list[float]]:
    tmp = procs.logdir
    (tmp / "mosquitto.conf").write_text(
        f"listener {MQTT_PORT} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        # without it mosquitto lets Nagle's algorithm hold small replies for the peer's delayed
        # ACK: ~40 ms per request/reply pair instead of well under 1 ms
        "set_tcp_nodelay true\n")
    config = tmp / "ccsbus.yaml"
    config.write_text(
        "role: EVSE\n"
        f"broker: {{url: 'mqtt://127.0.0.1:{MQTT_PORT}', base_topic: bench}}\n"
        "log: {level: WARNING}\n"
        f"v2g: {{interface: {interface}, wait_for_link: false, standalone: true, codec: {codec}}}\n")
    latencies = tmp / "latency.txt"
    procs.spawn("mosquitto", [*ns_secc, "mosquitto", "-c", str(tmp / "mosquitto.conf")])
    time.sleep(0.3)
    procs.spawn("recorder", [*ns_secc, PY, "-c", RECORDER, str(MQTT_PORT), str(latencies), "bench"])
    if codec == "mqtt":
        procs.spawn("exi", [*ns_secc, PY, "-m", "ccsbus", "run", "exi", "-c", str(config)])
    procs.spawn("v2g", [*ns_secc, PY, "-m", "ccsbus", "run", "v2g", "-c", str(config)])
    time.sleep(2.0)  # services connect to the broker and subscribe
    try:
        car = run_driver(ns_car, target, car_if, protocol, cycles, pause)
        deadline = time.monotonic() + 10
        rows: list[list[float]] = []
        while time.monotonic() < deadline:
            text = latencies.read_text() if latencies.exists() else ""
            rows = [[float(x) for x in line.split()] for line in text.splitlines() if line.strip()]
            if len(rows) >= cycles:
                break
            time.sleep(0.2)
        for i, part in enumerate(("queued before decode", "decode (codec round trip)", "state machine",
                                  "encode (codec round trip) + send"), start=1):
            if rows and len(rows[0]) > i:
                stats = percentiles([r[i] for r in rows])
                print(f"    {part:<36} p50={stats['p50']:6.2f} ms  p90={stats['p90']:6.2f} ms  "
                      f"p99={stats['p99']:6.2f} ms")
        return car, [r[0] for r in rows]
    finally:
        procs.stop()


def bench_peer(procs: Procs, pair: Any, protocol: str, cycles: int, pause: float
               ) -> dict[str, Any]:
    python = peer.ensure_peer_venv()
    workdir = procs.logdir / "iso15118"
    workdir.mkdir(exist_ok=True)
    name = "DIN_SPEC_70121" if protocol == "din" else "ISO_15118_2"
    procs.spawn("iso15118_secc", [*pair.exec_args(pair.evse_ns), str(python), "-m",
                                  "iso15118.secc.main"], cwd=workdir,
                env={"NETWORK_INTERFACE": pair.evse_if, "LOG_LEVEL": "WARNING",
                     "PROTOCOLS": name, "AUTH_MODES": "EIM", "PKI_PATH": str(workdir),
                     "MESSAGE_LOG_JSON": "false"})
    time.sleep(6.0)  # the JVM of its codec starts in ~2.5 s
    try:
        return run_driver(pair.exec_args(pair.pev_ns), "ff02::1", pair.pev_if, protocol, cycles,
                          pause)
    finally:
        procs.stop()


def fmt(label: str, stats: dict[str, float]) -> str:
    return (f"{label:<48} n={stats['n']:<5} p50={stats['p50']:7.2f} ms  p90={stats['p90']:7.2f} ms  "
            f"p99={stats['p99']:7.2f} ms  max={stats['max']:7.2f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--protocol", choices=["din", "iso2"], default="din")
    parser.add_argument("--cycle-pause", type=float, default=0.0,
                        help="pause between CurrentDemand cycles, s (cars send every 50-250 ms)")
    parser.add_argument("--codec", choices=["mqtt", "inprocess"], default="mqtt",
                        help="our SECC's codec: the codec service over mosquitto (default) or in process")
    parser.add_argument("--skip-peer", action="store_true", help="do not run iso15118's SECC")
    parser.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sdp-target", default="ff02::1", help=argparse.SUPPRESS)
    parser.add_argument("--interface", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        return drive_main(args)

    logdir = Path(tempfile.mkdtemp(prefix="ccsbus-bench-"))
    procs = Procs(logdir)
    print(f"CurrentDemand bench: {args.protocol}, {args.cycles} cycles, pause {args.cycle_pause} s, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, logs in {logdir}")
    pair = None
    try:
        if os.geteuid() == 0:
            pair = peer.VethPair(tag=f"b{os.getpid() % 10000}")
            pair.create()
            ns_secc, ns_car = pair.exec_args(pair.evse_ns), pair.exec_args(pair.pev_ns)
            car, inside = bench_ours(procs, ns_secc, ns_car, pair.evse_if, "ff02::1", pair.pev_if,
                                     args.protocol, args.cycles, args.cycle_pause, args.codec)
        else:
            print("not root: ours only, on ::1 (no namespaces)")
            car, inside = bench_ours(procs, [], [], "lo", "::1", "", args.protocol, args.cycles,
                                     args.cycle_pause, args.codec)
        ours_car = percentiles(car["current_demand_ms"])
        print(fmt(f"ccsbus SECC, inside (socket in -> out, {args.codec} codec)", percentiles(inside)))
        print(fmt("ccsbus SECC, at the car (round trip)", ours_car))
        if pair is not None and not args.skip_peer:
            try:
                theirs = percentiles(bench_peer(procs, pair, args.protocol, args.cycles,
                                                args.cycle_pause)["current_demand_ms"])
            except (peer.PeerUnavailable, RuntimeError) as exc:
                print(f"iso15118 SECC not measured: {exc}")
            else:
                print(fmt("iso15118 SECC, at the car (round trip)", theirs))
                print(f"ratio iso15118 / ccsbus at the car: p50 x{theirs['p50'] / ours_car['p50']:.1f}, "
                      f"p99 x{theirs['p99'] / ours_car['p99']:.1f}")
        goal = percentiles(inside)
        ok = goal["p50"] <= 5.0 and goal["p99"] <= 15.0
        print(f"goal p50 <= 5 ms, p99 <= 15 ms (inside): {'met' if ok else 'NOT met'}")
    finally:
        procs.stop()
        if pair is not None:
            pair.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
