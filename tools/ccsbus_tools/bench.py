"""`ccsbus bench stack`: how fast a stack starts, how much memory it holds, how soon a car charges.

- cold start: one stack (exi, hw, slac, v2g as separate processes) from spawning the processes until
  every service's status says `online`, on the embedded broker started beforehand;
- memory: resident set (RSS) and proportional set (PSS: shared pages split between the processes
  that share them) per service and for the whole stack, once it is ready;
- plug-in to the first CurrentDemandReq: a whole simulated session (`ccsbus sim`).
Goals: whole stack <= 150 MB RSS, ready <= 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ccsbus.broker import EmbeddedBroker, free_port
from ccsbus.config import load_config
from ccsbus.log import setup_logging
from ccsbus.stack import ServiceProcess, stack_env, wait_online

from .sim import STACK_SERVICES, SimOptions, rss_kib, run_session

GOAL_RSS_MB = 150.0
GOAL_READY_S = 3.0


def pss_kib(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


@dataclass
class StartResult:
    ready_s: float
    rss_kib: dict[str, int | None]
    pss_kib: dict[str, int | None]


@dataclass
class BenchReport:
    role: str
    services: list[str]
    starts: list[StartResult] = field(default_factory=list)
    plug_to_current_demand_s: float | None = None
    session_result: str = ""

    def ready_median(self) -> float:
        return statistics.median(s.ready_s for s in self.starts)

    def stack_rss_mb(self) -> float:
        last = self.starts[-1].rss_kib
        return sum(v or 0 for v in last.values()) / 1024.0

    def stack_pss_mb(self) -> float:
        last = self.starts[-1].pss_kib
        return sum(v or 0 for v in last.values()) / 1024.0

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role, "services": self.services,
            "ready_s": [round(s.ready_s, 3) for s in self.starts],
            "ready_median_s": round(self.ready_median(), 3),
            "rss_kib": self.starts[-1].rss_kib, "pss_kib": self.starts[-1].pss_kib,
            "stack_rss_mb": round(self.stack_rss_mb(), 1), "stack_pss_mb": round(self.stack_pss_mb(), 1),
            "plug_to_current_demand_s": self.plug_to_current_demand_s,
            "session_result": self.session_result,
            "goals": {"stack_rss_mb": GOAL_RSS_MB, "ready_s": GOAL_READY_S,
                      "rss_met": self.stack_rss_mb() <= GOAL_RSS_MB,
                      "ready_met": self.ready_median() <= GOAL_READY_S},
        }


async def cold_start(services: list[str], role: str, workdir: Path) -> StartResult:
    broker = EmbeddedBroker(port=free_port())
    await broker.start()
    base = f"ccsbus/bench-{role.lower()}"
    cfg = replace(load_config().broker, url=broker.url, base_topic=base)
    env = stack_env(broker.url, base, role, {"CCSBUS__HW__BACKEND": "sim", "CCSBUS__LOG__LEVEL": "WARNING"})
    procs = [ServiceProcess(name, env, log_file=str(workdir / f"{name}.log")) for name in services]
    started = time.monotonic()
    try:
        for proc in procs:
            proc.start()
        online = await wait_online(cfg, services, timeout=30)
        ready = time.monotonic() - started
        if set(services) - online:
            raise RuntimeError("not online within 30 s: " + ", ".join(sorted(set(services) - online))
                               + f" (logs in {workdir})")
        await asyncio.sleep(1.0)  # let each service finish what it does right after connecting
        rss = {p.name: rss_kib(p.pid) for p in procs}
        pss = {p.name: pss_kib(p.pid) for p in procs}
    finally:
        for proc in procs:
            await asyncio.to_thread(proc.stop)
        await broker.stop()
    return StartResult(ready, rss, pss)


async def bench_stack(repeat: int, role: str, services: list[str], session: bool) -> BenchReport:
    report = BenchReport(role, services)
    with tempfile.TemporaryDirectory(prefix="ccsbus-bench-") as tmp:
        for _ in range(repeat):
            report.starts.append(await cold_start(services, role, Path(tmp)))
        if session:
            result = await run_session(SimOptions(start_soc=60, target_soc=62, speed=200, timeout=90,
                                                  out=Path(tmp) / "session", plain=True))
            report.session_result = result.reason
            phases = {p.phase: p.start for p in result.recorder.phases}
            first_cd = next((m.t for m in result.recorder.messages
                             if m.side == "PEV" and m.name == "CurrentDemandReq"), None)
            if first_cd is not None and "plug-in" in phases:
                report.plug_to_current_demand_s = round(first_cd - phases["plug-in"], 3)
    return report


def report_text(report: BenchReport) -> str:
    j = report.to_json()
    lines = [f"ccsbus bench stack ({report.role}: {', '.join(report.services)})",
             f"  cold start to all online: {', '.join(f'{s:.2f}' for s in j['ready_s'])} s "
             f"(median {j['ready_median_s']:.2f} s; goal <= {GOAL_READY_S:g} s: "
             f"{'met' if j['goals']['ready_met'] else 'MISSED'})",
             f"  {'service':<8} {'RSS MB':>8} {'PSS MB':>8}"]
    for name in report.services:
        rss, pss = j["rss_kib"].get(name), j["pss_kib"].get(name)
        lines.append(f"  {name:<8} {(rss or 0) / 1024:>8.1f} {(pss or 0) / 1024:>8.1f}")
    lines.append(f"  {'stack':<8} {j['stack_rss_mb']:>8.1f} {j['stack_pss_mb']:>8.1f}   "
                 f"(goal RSS <= {GOAL_RSS_MB:g} MB: {'met' if j['goals']['rss_met'] else 'MISSED'})")
    if report.session_result:
        cd = report.plug_to_current_demand_s
        lines.append(f"  plug-in to first CurrentDemandReq: {'-' if cd is None else f'{cd:.2f} s'} "
                     f"(session: {report.session_result})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ccsbus bench",
        description="Benchmarks of the running system (the codec has its own: services/exi-codec/bench).")
    sub = parser.add_subparsers(dest="command", required=True)
    stack = sub.add_parser("stack", help="cold start, memory per service, plug-in to CurrentDemand",
                           description=__doc__)
    stack.add_argument("--repeat", type=int, default=3, help="cold starts to time (default 3)")
    stack.add_argument("--role", choices=["EVSE", "PEV"], default="EVSE")
    stack.add_argument("--services", default=",".join(STACK_SERVICES), help="comma-separated service ids")
    stack.add_argument("--no-session", action="store_true", help="skip the simulated session")
    stack.add_argument("--json", action="store_true", help="print JSON")
    stack.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    setup_logging("WARNING")
    services = [s for s in args.services.split(",") if s]
    report = asyncio.run(bench_stack(max(1, args.repeat), args.role, services, not args.no_session))
    print(json.dumps(report.to_json(), indent=1) if args.json else report_text(report))
    goals = report.to_json()["goals"]
    return 1 if args.check and not (goals["rss_met"] and goals["ready_met"]) else 0


if __name__ == "__main__":
    sys.exit(main())
