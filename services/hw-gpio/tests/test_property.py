"""Property test: random requests, measurements, v2g crashes and broker losses never break an invariant.

The safety machine runs inside the real controller with the sim backend (plant + built-in
counterpart); some steps replace the plant's measurements with arbitrary ones. Every step records
(measurements, outputs, events) and the checker judges each output change against the measurements
of that same step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccsbus.log import get_logger
from ccsbus_hw.backends.sim import SimBackend
from ccsbus_hw.controller import HwController
from ccsbus_hw.safety import Contactor, Isolation, Measurements, Outputs, Side
from ccsbus_hw.settings import HwSettings, SafetySettings, SimSettings

DT = 0.02
SAFETY = SafetySettings(current_threshold=1.0, contactor_open_timeout=1.0, unlock_voltage=60.0,
                        precharge_delta=20.0, broker_loss_timeout=0.3, feedback_timeout=0.2)
SIM = SimSettings(isolation_time=0.1, voltage_slew=2000.0, current_slew=400.0, plugged=True,
                  start_soc=50.0, discharge_tau=0.05)
SETTINGS = HwSettings(safety=SAFETY, sim=SIM, state_interval=0.5)


class RecordingController(HwController):
    glitch: Measurements | None = None
    last_meas: Measurements = Measurements()

    def measure(self) -> Measurements:
        meas = self.glitch if self.glitch is not None else super().measure()
        self.last_meas = meas
        return meas


@dataclass
class Step:
    time: float
    meas: Measurements
    out: Outputs
    events: list[dict[str, Any]]


@dataclass
class Checker:
    side: Side
    v2g_down: bool = False
    broker_down: bool = False
    need_rearm: bool = False
    opening_since: float | None = None
    prev: Outputs = field(default_factory=Outputs)
    violations: list[str] = field(default_factory=list)

    def action(self, kind: str, value: Any) -> None:
        if kind == "v2g":
            self.v2g_down = not value
        elif kind == "broker":
            self.broker_down = not value
        elif ((kind == "contactors" and not value) or kind == "cable_check") \
                and not self.v2g_down and not self.broker_down:
            self.need_rearm = False

    def fail(self, step: Step, text: str) -> None:
        self.violations.append(f"t={step.time:.2f}: {text} meas={step.meas} out={step.out}")

    def check(self, step: Step) -> None:
        prev, out, m = self.prev, step.out, step.meas
        names = [e["event"] for e in step.events]
        for e in step.events:
            if e["event"] == "shutdown" and e.get("step") == "start" \
                    and e.get("cause") != "command":
                self.need_rearm = True
        if out.contactor is Contactor.OPENING and prev.contactor is not Contactor.OPENING:
            self.opening_since = step.time
        if prev.contactors_closed and not out.contactors_closed:
            since = (self.opening_since if prev.contactor is Contactor.OPENING
                     and self.opening_since is not None else step.time)
            forced = "forced_open" in names and step.time - since >= SAFETY.contactor_open_timeout
            if not (abs(m.current) < SAFETY.current_threshold or forced):
                self.fail(step, "contactors opened under load without the timeout")
        unsafe_unlock = (out.contactor is not Contactor.OPEN or bool(m.contactor_feedback)
                         or not m.inlet_voltage < SAFETY.unlock_voltage)
        if prev.lock and not out.lock and unsafe_unlock:
            self.fail(step, "lock released with contactors closed or voltage present")
        if not prev.contactors_closed and out.contactors_closed:
            if not out.lock or m.lock_feedback is False:
                self.fail(step, "contactors closed without the lock")
            if self.side is Side.PEV:
                if m.battery_voltage is None or \
                        abs(m.inlet_voltage - m.battery_voltage) > SAFETY.precharge_delta:
                    self.fail(step, "PEV contactors closed without precharge")
            elif not (m.isolation is Isolation.VALID
                      or (out.cable_check and m.cp_state in ("B", "C", "D"))):
                self.fail(step, "EVSE contactors closed without a valid isolation check")
            if self.v2g_down or self.broker_down or self.need_rearm:
                self.fail(step, "contactors closed while v2g/broker down or before re-arming")
        if self.side is Side.PEV and self.v2g_down and out.cp == "C" and prev.cp == "C" \
                and (out.contactors_closed or out.lock):
            self.fail(step, "CP stayed in C with v2g offline")
        if out.contactor is not Contactor.OPENING:
            self.opening_since = None
        self.prev = out


class Harness:
    def __init__(self, side: Side) -> None:
        self.side = side
        self.backend = SimBackend(side, SIM, SAFETY.precharge_delta)
        self.published: list[tuple[str, Any]] = []
        self.ctl = RecordingController(side, SETTINGS, self.backend,
                                       lambda p, v: self.published.append((p, v)),
                                       lambda reason, topic: None, get_logger("hw.test"))
        self.now = 0.0
        self.checker = Checker(side)
        self.retained: dict[str, Any] = {}

    def tick(self, glitch: Measurements | None = None) -> Step:
        self.ctl.glitch = glitch
        mark = len(self.published)
        out = self.ctl.tick(self.now)
        events = [v for p, v in self.published[mark:] if p == "hw/safety"]
        step = Step(self.now, self.ctl.last_meas, out, events)
        self.checker.check(step)
        self.now += DT
        return step

    def replay(self) -> None:
        """What a reconnect does: the broker hands out the retained requests again."""
        for kind in ("lock", "cp", "contactors"):
            if kind in self.retained:
                self.act((kind, self.retained[kind]))

    def act(self, action: tuple[Any, ...]) -> None:
        kind = action[0]
        value: Any = action[1] if len(action) > 1 else None
        if kind in ("lock", "cp", "contactors"):
            self.retained[kind] = value
        self.checker.action(kind, value)
        ctl, machine = self.ctl, self.ctl.machine
        match kind:
            case "v2g_restart":  # crash, the broker's will, a new instance, retained replay
                self.act(("v2g", False))
                self.act(("ticks", value))
                self.act(("v2g", True))
                self.replay()
            case "reconnect":  # broker gone for a while, then back with the retained requests
                self.act(("broker", False))
                self.act(("ticks", value))
                self.act(("broker", True))
                self.replay()
            case "ticks":
                for _ in range(value):
                    self.tick()
            case "glitch":
                self.tick(value)
            case "contactors":
                ctl.on_topic("relay_request", "on" if value else "off") if self.side is Side.PEV \
                    else ctl.on_command({"cmd": "contactor", "value": "close" if value else "open"})
            case "lock":
                ctl.on_topic("lock_request", "lock" if value else "unlock") \
                    if self.side is Side.PEV else \
                    ctl.on_command({"cmd": "lock", "value": "lock" if value else "unlock"})
            case "cp":
                ctl.on_topic("cpstate", value)
            case "cable_check":
                ctl.on_command({"cmd": "cable_check"})
            case "target":
                ctl.on_topic("target_voltage", value[0])
                ctl.on_topic("target_current", value[1])
            case "plug":
                ctl.on_command({"cmd": "plug", "value": value})
            case "fault":
                ctl.on_command({"cmd": "fault", "value": value})
            case "safe_shutdown":
                ctl.on_command({"cmd": "safe_shutdown"})
            case "v2g":
                ctl.on_topic("v2g/status", "online" if value else "offline")
            case "broker":
                machine.set_broker_up(self.now, value)


volts = st.floats(min_value=-50, max_value=1000, allow_nan=False)
amps = st.floats(min_value=-300, max_value=300, allow_nan=False)
measurements = st.builds(
    Measurements, current=amps, inlet_voltage=volts,
    battery_voltage=st.one_of(st.none(), volts), isolation=st.sampled_from(Isolation),
    contactor_feedback=st.one_of(st.none(), st.booleans()),
    lock_feedback=st.one_of(st.none(), st.booleans()),
    cp_state=st.sampled_from([None, "A", "B", "C", "D", "E", "F"]), stop_button=st.booleans())

common = st.one_of(
    st.tuples(st.just("ticks"), st.integers(1, 60)),
    st.tuples(st.just("glitch"), measurements),
    st.tuples(st.just("contactors"), st.booleans()),
    st.tuples(st.just("lock"), st.booleans()),
    st.tuples(st.just("safe_shutdown")),
    st.tuples(st.just("v2g"), st.booleans()),
    st.tuples(st.just("broker"), st.booleans()),
    st.tuples(st.just("v2g_restart"), st.integers(1, 100)),
    st.tuples(st.just("reconnect"), st.integers(1, 60)),
    st.tuples(st.just("fault"), st.sampled_from(["none", "isolation", "overshoot",
                                                 "stuck_contactor"])),
)
pev_actions = st.one_of(common, st.tuples(st.just("cp"), st.sampled_from(["A", "B", "C"])),
                        st.tuples(st.just("plug"), st.sampled_from(["in", "out"])))
evse_actions = st.one_of(common, st.tuples(st.just("cable_check")),
                         st.tuples(st.just("target"), st.tuples(st.integers(0, 600),
                                                                st.integers(0, 250))),
                         st.tuples(st.just("plug"), st.sampled_from(["A", "B", "C"])))

PEV_CHARGING = [("v2g", True), ("cp", "B"), ("lock", True), ("ticks", 5), ("cp", "C"),
                ("ticks", 40), ("contactors", True), ("ticks", 40)]
EVSE_CHARGING = [("v2g", True), ("plug", "C"), ("cable_check",), ("ticks", 20),
                 ("target", (350, 2)), ("ticks", 20), ("contactors", True),
                 ("target", (350, 120)), ("ticks", 40)]


def run_and_check(side: Side, prefix: bool, actions: list[tuple[Any, ...]]) -> None:
    h = Harness(side)
    h.tick()
    for action in (PEV_CHARGING if side is Side.PEV else EVSE_CHARGING) if prefix else []:
        h.act(action)
    for action in actions:
        h.act(action)
    # the end: v2g dies; the watchdog must bring everything to a safe state on its own
    h.act(("v2g", False))
    for _ in range(round(4.0 / DT)):
        last = h.tick()
    assert not h.checker.violations, "\n".join(h.checker.violations[:5])
    assert not last.out.contactors_closed, last
    stuck = bool(last.meas.contactor_feedback) or last.meas.inlet_voltage >= SAFETY.unlock_voltage
    if not stuck:  # liveness: nothing holds voltage any more, so the cable is free
        assert not last.out.lock, last
    if side is Side.PEV:
        assert last.out.cp != "C"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.booleans(), actions=st.lists(pev_actions, max_size=25))
def test_pev_invariants_hold(prefix: bool, actions: list[tuple[Any, ...]]) -> None:
    run_and_check(Side.PEV, prefix, actions)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.booleans(), actions=st.lists(evse_actions, max_size=25))
def test_evse_invariants_hold(prefix: bool, actions: list[tuple[Any, ...]]) -> None:
    run_and_check(Side.EVSE, prefix, actions)


def test_prefix_reaches_charging() -> None:
    """The scripted prefixes really charge, so the random runs start from energy flowing."""
    for side, prefix in ((Side.PEV, PEV_CHARGING), (Side.EVSE, EVSE_CHARGING)):
        h = Harness(side)
        h.tick()
        for action in prefix:
            h.act(action)
        assert h.ctl.machine.out.contactor is Contactor.CLOSED, side
        assert h.backend.read_current() > 50.0, side


def test_checker_catches_a_broken_machine() -> None:
    """The checker is not vacuous: an unlock under voltage and an open under load are flagged."""
    c = Checker(Side.PEV)
    c.prev = Outputs(contactor=Contactor.CLOSED, lock=True)
    c.check(Step(1.0, Measurements(current=80.0, inlet_voltage=400.0),
                 Outputs(contactor=Contactor.OPEN, lock=False), []))
    assert len(c.violations) == 2
