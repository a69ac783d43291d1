"""`ccsbus sim`: one command runs a whole simulated DC charging session.

An EVSE stack (base `ccsbus/evse`) and a PEV stack (base `ccsbus/pev`), every service its own
process, on the embedded broker or `--broker URL`; the two SLAC services meet through the virtual
modem (`ccsbus vmodem`, UDP ports, no root); the two simulated power stages form the cable through
each other's `hw/state`. The simulation plays the user: it plugs the cable in (the charger turns on
its 5 % PWM), lets the car charge to the target SoC, and unplugs after the car's safe shutdown.

Output folder (`--out`, default `runs/<timestamp>/`): `session.json` (the session log `ccsbus plot`
reads), `session.pcap` (the EVSE host's PLC link: SLAC frames and the V2G exchange), `logs/` (one
log per process). Exit code 0 only when every phase happened in order and the session ended normally.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from ccsbus.broker import EmbeddedBroker, free_port
from ccsbus.bus import Bus
from ccsbus.config import BrokerConfig, load_config
from ccsbus.log import get_logger, setup_logging
from ccsbus.stack import ServiceProcess, stack_env, wait_online

from .session import Phase, SessionRecorder, is_request, message_base
from .simnet import UdpTap
from .simpcap import PlcCapture

log = get_logger("sim")

EVSE_BASE = "ccsbus/evse"
PEV_BASE = "ccsbus/pev"
STACK_SERVICES = ("exi", "hw", "slac", "v2g")
EXIT_OK = 0
EXIT_SESSION_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3

# charger-side fault cases (services/v2g/README.md: 1..20 by number or name) go to the EVSE's v2g
# service; these names are faults of the simulated power stage and go to the EVSE's hw service
HW_FAULTS = ("isolation", "overshoot", "stuck_contactor")
NO_FAULT = ("0", "16", "none", "good_case")
V2G_FAULT_CASES = 20

PLUG_IN_DUTY = 5.0  # the charger's PWM for digital communication: what makes the car see the plug
NO_PWM = 100.0
BETWEEN_SESSIONS = 1.0  # seconds between unplug and the next plug-in of a multi-session run
WATCH_PERIOD = 0.1  # seconds between two looks at the session's state
VIEW_PERIOD = 0.25  # seconds between two redraws of the live view
SHUTDOWN_PATIENCE = 5.0  # seconds the sim waits for the car's safe shutdown before unplugging anyway


class Side(Enum):
    EVSE = "EVSE"
    PEV = "PEV"


@dataclass(frozen=True)
class SimOptions:
    protocol: str = "din"
    target_soc: float = 80.0
    start_soc: float = 30.0
    speed: float = 100.0
    fault: str | None = None
    role_only: Side | None = None
    interface: str = ""
    broker: str = ""
    timeout: float = 120.0
    out: Path | None = None
    plain: bool = False
    log_level: str = "INFO"
    services: tuple[str, ...] = STACK_SERVICES
    sessions: int = 1


@dataclass(frozen=True)
class StackPlan:
    side: Side
    base: str
    services: tuple[str, ...]
    env: Mapping[str, str]


@dataclass(frozen=True)
class Ports:
    evse_tap: int
    pev_tap: int
    evse_modem: int
    pev_modem: int
    sdp: int = 15118


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A free UDP port: each simulation's modem ports and SDP get their own, so runs side by side
    on one machine never meet."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def fault_value(fault: str) -> tuple[str, str]:
    """`--fault` -> (service, value): a charger fault case for v2g or a power-stage fault for hw."""
    if fault.isdigit():
        if not 0 <= int(fault) <= V2G_FAULT_CASES:
            raise ValueError(f"fault case {fault}: cases are 1..{V2G_FAULT_CASES}")
        return "v2g", fault
    if fault in HW_FAULTS:
        return "hw", fault
    if not fault.replace("_", "").isalnum():
        raise ValueError(f"bad fault name {fault!r}")
    return "v2g", fault  # the v2g service checks the name against its table and says what it knows


def plan_stacks(opts: SimOptions, broker_url: str, ports: Ports | None) -> list[StackPlan]:
    """The environment of every service process of both stacks (pure: testable without processes)."""
    sides = [opts.role_only] if opts.role_only else [Side.EVSE, Side.PEV]
    plans = []
    for side in sides:
        base = EVSE_BASE if side is Side.EVSE else PEV_BASE
        peer = PEV_BASE if side is Side.EVSE else EVSE_BASE
        extra = {
            "CCSBUS__LOG__LEVEL": opts.log_level,
            "CCSBUS__HW__BACKEND": "sim",
            "CCSBUS__HW__SIM__SPEEDUP": str(opts.speed),
            "CCSBUS__HW__SIM__START_SOC": str(opts.start_soc),
            "CCSBUS__V2G__EVCC__STOP_SOC": str(opts.target_soc),
            "CCSBUS__V2G__EVCC__PROTOCOLS": f"[{opts.protocol}]",
        }
        if opts.fault and side is Side.EVSE and fault_value(opts.fault)[0] == "v2g":
            extra["CCSBUS__V2G__FAULT"] = opts.fault
        if opts.role_only:
            # one stack against a real peer on a real interface; the power stage stays simulated
            extra |= {"CCSBUS__SLAC__LINK": "pcap", "CCSBUS__SLAC__INTERFACE": opts.interface,
                      "CCSBUS__V2G__INTERFACE": opts.interface, "CCSBUS__HW__SIM__PLUGGED": "true"}
        else:
            assert ports is not None
            extra |= {
                "CCSBUS__SLAC__LINK": "udp",
                "CCSBUS__SLAC__UDP_HOST": "127.0.0.1",
                "CCSBUS__SLAC__UDP_PORT": str(ports.evse_tap if side is Side.EVSE else ports.pev_tap),
                "CCSBUS__HW__CABLE_PEER_BASE": peer,
                "CCSBUS__V2G__INTERFACE": "lo",
                # loopback has no multicast: the car asks the charger directly, on this run's port
                "CCSBUS__V2G__EVCC__SDP_TARGET": "::1",
                "CCSBUS__V2G__SDP_PORT": str(ports.sdp),
                "CCSBUS__V2G__EVCC__SDP_PORT": str(ports.sdp),
            }
        plans.append(StackPlan(side, base, opts.services, stack_env(broker_url, base, side.value, extra)))
    return plans


def rss_kib(pid: int | None) -> int | None:
    """Resident set size of a process in KiB (from /proc), None when it is gone."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def fd_count(pid: int | None) -> int | None:
    """Open file descriptors (sockets included) of a process, None when it is gone."""
    if pid is None:
        return None
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def decode_payload(payload: bytes) -> Any:
    """Contract payloads are JSON objects, decimal numbers or plain words."""
    text = payload.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass
class ChildProcess:
    """A helper process that is not a service (the virtual modem, a private mosquitto)."""

    name: str
    argv: Sequence[str]
    log_file: Path
    proc: subprocess.Popen[bytes] | None = None
    _out: Any = None

    def start(self) -> None:
        self._out = open(self.log_file, "ab")  # noqa: SIM115 - closed in stop
        self.proc = subprocess.Popen(list(self.argv), stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 3.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._out is not None:
            self._out.close()
            self._out = None
        return self.proc.returncode


@dataclass
class SimResult:
    ok: bool
    exit_code: int
    reason: str
    out: Path
    recorder: SessionRecorder
    elapsed: float
    rss_start: dict[str, int | None] = field(default_factory=dict)
    rss_end: dict[str, int | None] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    pcap_frames: int = 0


class Simulation:
    """Runs one session: start everything, drive the user's steps, watch, stop, write the results."""

    def __init__(self, opts: SimOptions, out: Path, view: Any = None) -> None:
        self.opts = opts
        self.out = out
        self.view = view
        self.recorder = SessionRecorder()
        self.capture = PlcCapture()
        self.t0 = time.monotonic()
        self.processes: dict[str, ServiceProcess | ChildProcess] = {}
        self.buses: dict[Side, Bus] = {}
        self.taps: list[UdpTap] = []
        self.embedded: EmbeddedBroker | None = None
        self.changed = asyncio.Event()
        self.session_stopped_at: float | None = None
        self.fault_injected = False
        self.interrupted = False
        self.ready_at = 0.0
        self.ended_since: float | None = None
        self.rounds: list[dict[str, Any]] = []
        self.broker_process: ChildProcess | None = None
        # the side whose view decides when the session is over: the car, unless it is a real one
        self.watched = Side.EVSE if opts.role_only is Side.EVSE else Side.PEV

    def interrupt(self) -> None:
        self.interrupted = True
        self.changed.set()

    # ------------------------------------------------------------------ helpers
    def now(self) -> float:
        return time.monotonic() - self.t0

    def _on_message(self, side: Side, path: str, payload: bytes) -> None:
        value = decode_payload(payload)
        if not payload:
            return  # a cleared retained topic
        opened = self.recorder.feed(side.value, path, value, self.now())
        if side is Side.EVSE and path == "slac/link" and isinstance(value, dict):
            self.capture.note_peer(value.get("peer_mac"))
        if side is Side.PEV and path == "v2g/session" and isinstance(value, dict) \
                and str(value.get("state", "")).upper() == "SDP":
            self.capture.sdp_started(time.time())
        if path == "v2g/message" and isinstance(value, dict):
            if side is Side.PEV:
                self.capture.v2g_message(value)
            name = str(value.get("name", ""))
            # the car received (or, with the charger alone, the charger sent) SessionStopRes
            if side is self.watched and message_base(name) == "sessionstop" and not is_request(name) \
                    and self.session_stopped_at is None:
                self.session_stopped_at = self.now()
        if opened is not None:
            log.info("phase", phase=opened.value, t=round(self.now(), 2))
            if self.view is not None:
                self.view.phase_changed(opened, self.now())
        self.changed.set()

    def _recorder_for(self, side: Side) -> Callable[[str, bytes], None]:
        def handler(path: str, payload: bytes) -> None:
            self._on_message(side, path, payload)

        return handler

    def _broker_cfg(self, url: str, base: str) -> BrokerConfig:
        stack = load_config()
        return replace(stack.broker, url=url, base_topic=base)

    def dead_processes(self) -> list[str]:
        return [name for name, proc in self.processes.items() if not proc.alive()]

    def rss(self) -> dict[str, int | None]:
        return {name: rss_kib(proc.pid) for name, proc in self.processes.items()}

    # ------------------------------------------------------------------ run
    async def run(self) -> SimResult:
        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        self._route_loop_errors()
        url = self.opts.broker
        if not url:
            self.embedded = EmbeddedBroker(port=free_port())
            await self.embedded.start()
            url = self.embedded.url
        elif url == "mosquitto":
            url = await self._start_mosquitto()
        ports = None
        if not self.opts.role_only:
            ports = Ports(free_udp_port(), free_udp_port(), free_udp_port(), free_udp_port(),
                          free_udp_port("::1"))
        plans = plan_stacks(self.opts, url, ports)
        rss_start: dict[str, int | None] = {}
        result_reason = ""
        exit_code = EXIT_SESSION_FAILED
        try:
            for plan in plans:
                bus = Bus("external", self._broker_cfg(url, plan.base), plan.side.value,
                          log=get_logger(f"sim.{plan.side.value.lower()}"))
                bus.subscribe("#", self._recorder_for(plan.side), raw=True)
                await bus.start()
                self.buses[plan.side] = bus
            if ports is not None:
                await self._start_medium(ports)
            else:
                # one side against a real peer: its simulated counterpart is plugged from the start
                self.recorder.enter(Phase.PLUG_IN, self.now())
            for plan in plans:
                for name in plan.services:
                    key = f"{plan.side.value.lower()}-{name}"
                    proc = ServiceProcess(name, plan.env, log_file=str(self.out / "logs" / f"{key}.log"))
                    proc.start()
                    self.processes[key] = proc
            for plan in plans:
                online = await wait_online(self._broker_cfg(url, plan.base), plan.services, timeout=20)
                missing = sorted(set(plan.services) - online)
                if missing:
                    raise SimError(f"{plan.side.value} services not online within 20 s: "
                                   + ", ".join(missing) + f" (see {self.out / 'logs'})")
            self.ready_at = self.now()
            log.info("stacks ready", seconds=round(self.ready_at, 2))
            rss_start = self.rss()
            if self.opts.fault:
                self._inject_fault(self.opts.fault)
            for number in range(1, self.opts.sessions + 1):
                if number > 1:
                    await self._next_session()
                exit_code, result_reason = await self._drive()
                self._note_round(number, exit_code, result_reason)
                if exit_code != EXIT_OK:
                    break
        except SimError as exc:
            result_reason = str(exc)
            exit_code = EXIT_SESSION_FAILED
        finally:
            rss_end = self.rss()
            self.recorder.close(self.now())
            exit_codes = await self._stop_all()
        elapsed = self.now()
        pcap_frames = 0
        if not self.opts.role_only:
            pcap_frames = self.capture.write(self.out / "session.pcap")
        result = SimResult(exit_code == EXIT_OK, exit_code, result_reason, self.out, self.recorder,
                           elapsed, rss_start, rss_end, exit_codes, pcap_frames)
        self._write_log(result)
        if self.rounds:
            (self.out / "sessions.json").write_text(json.dumps(self.rounds, indent=1))
        return result

    def _note_round(self, number: int, exit_code: int, reason: str) -> None:
        """One line per session of the run: its result and the processes' memory and descriptors."""
        self.rounds.append({
            "session": number, "result": "ok" if exit_code == EXIT_OK else "failed", "reason": reason,
            "seconds": round(self.now(), 2), "phases": self.recorder.durations(),
            "rss_kib": self.rss(), "fds": {n: fd_count(p.pid) for n, p in self.processes.items()},
            "sim_fds": fd_count(os.getpid()), "sim_rss_kib": rss_kib(os.getpid()),
        })
        if self.view is not None and self.opts.sessions > 1:
            self.view.round_done(self.rounds[-1])

    async def _next_session(self) -> None:
        """Start the next plug-in on the same running stacks with a fresh record."""
        await asyncio.sleep(BETWEEN_SESSIONS)
        self.t0 = time.monotonic()
        self.recorder = SessionRecorder()
        self.capture = PlcCapture()
        if self.taps:
            self.taps[0].sink = self.capture.homeplug
        self.session_stopped_at = None
        self.ended_since = None

    def _route_loop_errors(self) -> None:
        """Errors of in-process libraries (the embedded broker) go to logs/sim.log, not the view."""
        path = self.out / "logs" / "sim.log"

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            with path.open("a", encoding="utf-8") as fh:
                fh.write(f"{time.strftime('%H:%M:%S')} {context.get('message', '')} {exc!r}\n")

        asyncio.get_running_loop().set_exception_handler(handler)

    async def _start_mosquitto(self) -> str:
        """A private mosquitto on a free loopback port (`--broker mosquitto`)."""
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(exe):
            raise SimError("--broker mosquitto: the mosquitto binary is not installed")
        port = free_port()
        conf = self.out / "logs" / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        broker = ChildProcess("mosquitto", [exe, "-c", str(conf)], self.out / "logs" / "mosquitto.log")
        broker.start()
        deadline = time.monotonic() + 5
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if not broker.alive() or time.monotonic() > deadline:
                raise SimError(f"mosquitto did not start (see {self.out / 'logs' / 'mosquitto.log'})")
            await asyncio.sleep(0.02)
        self.broker_process = broker
        return f"mqtt://127.0.0.1:{port}"

    async def _start_medium(self, ports: Ports) -> None:
        log_file = self.out / "logs" / "vmodem.log"
        vmodem = ChildProcess("vmodem", [sys.executable, "-m", "ccsbus", "vmodem",
                                         "--port", f"udp:127.0.0.1:{ports.evse_modem}",
                                         "--port", f"udp:127.0.0.1:{ports.pev_modem}"], log_file)
        vmodem.start()
        self.processes["vmodem"] = vmodem
        deadline = time.monotonic() + 10
        while b"vmodem ready" not in log_file.read_bytes():
            if not vmodem.alive() or time.monotonic() > deadline:
                raise SimError(f"the virtual modem did not start (see {log_file})")
            await asyncio.sleep(0.05)
        evse_tap = UdpTap(ports.evse_tap, ports.evse_modem, self.capture.homeplug)
        pev_tap = UdpTap(ports.pev_tap, ports.pev_modem)
        for tap in (evse_tap, pev_tap):
            await tap.open()
            self.taps.append(tap)

    def _inject_fault(self, fault: str) -> None:
        """v2g faults are set through the EVSE's config at start; power-stage faults by command."""
        service, value = fault_value(fault)
        if service == "hw" and Side.EVSE in self.buses:
            self.buses[Side.EVSE].publish("hw/cmd", {"cmd": "fault", "value": value})
        self.fault_injected = fault not in NO_FAULT
        log.info("fault injected", service=service, value=value)

    def _plug(self, inserted: bool) -> None:
        """The charger side's CP PWM is what the simulated car sees of the plug."""
        bus = self.buses.get(Side.EVSE)
        if bus is not None:
            bus.publish("hw/cmd", {"cmd": "pwm", "value": PLUG_IN_DUTY if inserted else NO_PWM})

    async def _drive(self) -> tuple[int, str]:
        deadline = self.now() + self.opts.timeout
        self._plug(True)
        self.recorder.enter(Phase.PLUG_IN, self.now())
        unplug_at: float | None = None
        last_view = 0.0
        while True:
            # a fixed pace, not every message: the loop also carries the broker and the recorder
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), WATCH_PERIOD)
            await asyncio.sleep(WATCH_PERIOD / 2)
            if self.view is not None and self.now() - last_view >= VIEW_PERIOD:
                last_view = self.now()
                self.view.update(self, last_view)
            if self.interrupted:
                return EXIT_SESSION_FAILED, "interrupted"
            dead = self.dead_processes()
            if dead:
                return EXIT_SESSION_FAILED, "process exited during the session: " + ", ".join(dead)
            if self.now() > deadline:
                return EXIT_TIMEOUT, (f"timeout after {self.opts.timeout:g} s in phase "
                                      f"{self.recorder.phase.value if self.recorder.phase else '-'}")
            if unplug_at is None and self._session_over():
                # the car has finished its safe shutdown (or its session stop): pull the plug
                unplug_at = self.now()
                self._plug(False)
            if unplug_at is not None and (self.recorder.phase is Phase.UNPLUG
                                          or self.now() - unplug_at > 3.0):
                self.recorder.enter(Phase.UNPLUG, self.now())
                return self._verdict()

    def _session_over(self) -> bool:
        rec = self.recorder
        side = self.watched.value
        pev_lock = rec.present.get(f"{side}.hw.lock") if self.watched is Side.PEV else None
        if self.session_stopped_at is not None:
            return pev_lock in (None, "unlocked") or self.now() - self.session_stopped_at > 3.0
        # an aborted session: the car reported an error and completed its safe shutdown (or has
        # been stuck in it longer than a driver would wait)
        state = rec.v2g_state.get(side, "").lower()
        ended = any(word in state for word in ("stopped", "finished", "shutdown", "error", "ended",
                                               "aborted"))
        if not ended or rec.phase is None or rec.phase is Phase.PLUG_IN:
            self.ended_since = None
            return False
        if self.ended_since is None:
            self.ended_since = self.now()
        return pev_lock in (None, "unlocked") or self.now() - self.ended_since > SHUTDOWN_PATIENCE

    def _verdict(self) -> tuple[int, str]:
        rec = self.recorder
        problems = []
        if self.fault_injected:
            problems.append(f"fault {self.opts.fault} injected")
        missing = rec.missing()
        if missing:
            problems.append("missing phases: " + ", ".join(missing))
        if not rec.in_order():
            problems.append("phases out of order: " + " > ".join(rec.seen()))
        if rec.last_error:
            problems.append(f"v2g error: {rec.last_error}")
        soc = rec.soc
        if not self.opts.role_only and (soc is None or soc < self.opts.target_soc - 1.0):
            problems.append(f"SoC {soc if soc is not None else '-'} below the target "
                            f"{self.opts.target_soc:g}")
        if problems:
            return EXIT_SESSION_FAILED, "; ".join(problems)
        return EXIT_OK, "session ended normally"

    async def _stop_all(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        # stop the car first, then the charger, as a driver would leave
        for name, proc in list(self.processes.items()):
            codes[name] = await asyncio.to_thread(proc.stop)
        for tap in self.taps:
            tap.close()
        for bus in self.buses.values():
            await bus.close()
        if self.embedded is not None:
            await self.embedded.stop()
        if self.broker_process is not None:
            codes["mosquitto"] = await asyncio.to_thread(self.broker_process.stop)
        return codes

    def _write_log(self, result: SimResult) -> None:
        data = self.recorder.to_json(
            result="ok" if result.ok else "failed",
            exit_code=result.exit_code,
            reason=result.reason,
            options={"protocol": self.opts.protocol, "target_soc": self.opts.target_soc,
                     "start_soc": self.opts.start_soc, "speed": self.opts.speed,
                     "fault": self.opts.fault, "broker": self.opts.broker or "embedded",
                     "role_only": self.opts.role_only.value if self.opts.role_only else None},
            elapsed=round(result.elapsed, 3),
            ready_seconds=round(self.ready_at, 3),
            rss_kib={"start": result.rss_start, "end": result.rss_end},
            exit_codes=result.exit_codes,
            pids={name: proc.pid for name, proc in self.processes.items()},
            pcap={"file": "session.pcap", "frames": result.pcap_frames,
                  "encode_failures": self.capture.encode_failures} if not self.opts.role_only else None,
        )
        (self.out / "session.json").write_text(json.dumps(data, indent=1, default=str))


class SimError(RuntimeError):
    """The simulation could not run the session (a process or the medium did not come up)."""


def default_out() -> Path:
    return Path("runs") / time.strftime("%Y%m%d-%H%M%S")


def parse_args(argv: list[str] | None) -> SimOptions:
    parser = argparse.ArgumentParser(
        prog="ccsbus sim",
        description="Run a whole simulated DC charging session: EVSE and PEV stacks (every service "
                    "its own process) joined by the virtual modem and the simulated cable; "
                    "plug-in, SLAC, SDP, DIN 70121 or ISO 15118-2, CableCheck, PreCharge, charging "
                    "to the target SoC, stop, welding detection, unplug.",
        epilog="Exit codes: 0 the session ended normally; 1 it did not (fault, error, missing "
               "phase); 2 bad options; 3 timeout. Faults (--fault): a charger-side case 1..20 of the "
               "v2g fault table (services/v2g/README.md) by number or name, or a power-stage fault "
               "(isolation, overshoot, stuck_contactor).")
    parser.add_argument("--protocol", choices=["din", "iso2"], default="din",
                        help="the protocol the car offers (default din)")
    parser.add_argument("--target-soc", type=float, default=80.0, help="the car stops at this SoC (%%, default 80)")
    parser.add_argument("--start-soc", type=float, default=30.0, help="battery SoC at plug-in (%%, default 30)")
    parser.add_argument("--speed", type=float, default=100.0,
                        help="speed-up factor of the simulated battery (default 100)")
    parser.add_argument("--fault", help="inject a fault: case number or name, or a power-stage fault")
    parser.add_argument("--role-only", choices=["evse", "pev"],
                        help="run only this side against a real peer on --interface")
    parser.add_argument("--interface", default="", help="PLC interface for --role-only (e.g. eth1)")
    parser.add_argument("--broker", default="",
                        help="broker URL, or `mosquitto` for a private mosquitto on a free port "
                             "(default: the embedded broker)")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds (default 120)")
    parser.add_argument("--out", type=Path, help="output folder (default runs/<timestamp>/)")
    parser.add_argument("--sessions", type=int, default=1,
                        help="plug in this many times on the same running stacks (soak runs)")
    parser.add_argument("--plain", action="store_true",
                        help="plain line output instead of the live view (automatic without a terminal)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="level of the services' logs (in <out>/logs/)")
    args = parser.parse_args(argv)
    if args.role_only and not args.interface:
        parser.error("--role-only needs --interface")
    if args.fault:
        try:
            fault_value(args.fault)
        except ValueError as exc:
            parser.error(str(exc))
    if not 0 <= args.target_soc <= 100 or not 0 <= args.start_soc <= 100:
        parser.error("SoC values are percentages from 0 to 100")
    if args.speed <= 0:
        parser.error("--speed must be positive")
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")
    return SimOptions(protocol=args.protocol, target_soc=args.target_soc, start_soc=args.start_soc,
                      speed=args.speed, fault=args.fault,
                      role_only=Side(args.role_only.upper()) if args.role_only else None,
                      interface=args.interface, broker=args.broker, timeout=args.timeout,
                      out=args.out, plain=args.plain or not sys.stdout.isatty(),
                      log_level=args.log_level, sessions=args.sessions)


async def run_session(opts: SimOptions, view: Any = None) -> SimResult:
    out = opts.out or default_out()
    out.mkdir(parents=True, exist_ok=True)
    sim = Simulation(opts, out, view)
    task = asyncio.ensure_future(sim.run())
    loop = asyncio.get_running_loop()
    # Ctrl-C ends the session through the same stop path, so no child process is left behind
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, sim.interrupt)
    try:
        return await task
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    setup_logging("WARNING")
    from .simview import SimView

    view = SimView(opts)
    with view:
        result = asyncio.run(run_session(opts, view))
    view.summary(result)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
