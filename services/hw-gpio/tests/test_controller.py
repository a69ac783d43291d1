"""The control cycle with a scripted backend: unknown inputs count as live, outputs follow the machine."""

from __future__ import annotations

from typing import Any

from ccsbus.log import get_logger
from ccsbus_hw.backends.base import BatteryReading, HwBackend
from ccsbus_hw.controller import HwController, Throttle
from ccsbus_hw.safety import Contactor, Side
from ccsbus_hw.settings import HwSettings, SafetySettings


class ScriptedBoard(HwBackend):
    """A car-side board with an inlet ADC and a battery, but no current measurement."""

    name = "scripted"

    def __init__(self) -> None:
        self.inlet: float | None = None
        self.calls: list[tuple[str, Any]] = []

    def set_cp_state(self, state: str) -> None:
        self.calls.append(("cp", state))

    def set_pwm(self, duty: float) -> None:
        self.calls.append(("pwm", duty))

    def set_contactors(self, closed: bool) -> None:
        self.calls.append(("contactors", closed))

    def set_lock(self, locked: bool) -> None:
        self.calls.append(("lock", locked))

    def read_inlet_voltage(self) -> float | None:
        return self.inlet

    def read_battery(self) -> BatteryReading:
        return BatteryReading(voltage=400.0)


def make() -> tuple[HwController, ScriptedBoard, list[tuple[str, Any]]]:
    board = ScriptedBoard()
    published: list[tuple[str, Any]] = []
    settings = HwSettings(safety=SafetySettings(contactor_open_timeout=2.0))
    ctl = HwController(Side.PEV, settings, board, lambda p, v: published.append((p, v)),
                       lambda r, t: published.append(("hw/error", r)), get_logger("hw.test"),
                       wall_clock=lambda: 1000.0)
    return ctl, board, published


def charging(ctl: HwController, board: ScriptedBoard) -> None:
    ctl.tick(0.0)
    assert ("lock", False) not in board.calls  # start-up does not drive the lock open
    ctl.on_topic("lock_request", "lock")
    ctl.on_topic("cpstate", "C")
    board.inlet = 398.0
    ctl.tick(0.1)
    ctl.on_topic("relay_request", "on")
    ctl.tick(0.2)
    assert ctl.machine.out.contactor is Contactor.CLOSED
    assert board.calls[-1] == ("contactors", True)


def test_unknown_current_only_opens_on_the_timeout() -> None:
    ctl, board, published = make()
    charging(ctl, board)
    ctl.on_topic("relay_request", "off")
    ctl.tick(1.0)
    assert ctl.machine.out.contactor is Contactor.OPENING
    ctl.tick(2.9)
    assert ctl.machine.out.contactor is Contactor.OPENING
    ctl.tick(3.1)
    assert board.calls[-1] == ("contactors", False)
    events = [v for p, v in published if p == "hw/safety"]
    assert events[-1]["event"] == "forced_open" and events[-1]["current"] is None
    state = [v for p, v in published if p == "hw/state"][-1]
    assert "present_current" not in state  # unknown is not reported as a number


def test_reported_current_lets_the_contactors_open_at_once() -> None:
    ctl, board, published = make()
    charging(ctl, board)
    ctl.on_topic("charger_current", 0)
    ctl.on_topic("relay_request", "off")
    ctl.tick(1.0)
    assert board.calls[-1] == ("contactors", False)
    assert not [v for p, v in published if p == "hw/safety"]


def test_user_topics_and_state_are_published_on_change_and_kept_alive() -> None:
    ctl, board, published = make()
    board.inlet = 10.0
    ctl.tick(0.0)
    names = [p for p, _ in published]
    assert {"hw/state", "cp/state", "inlet_voltage", "battery_voltage"} <= set(names)
    published.clear()
    ctl.tick(0.5)  # nothing changed, keep-alive not due
    assert published == []
    board.inlet = 200.0
    ctl.tick(0.6)
    assert ("inlet_voltage", 200.0) in published
    published.clear()
    ctl.tick(1.7)  # keep-alive
    assert "hw/state" in [p for p, _ in published]


def test_throttle_deadband_and_interval() -> None:
    t = Throttle(keepalive=1.0)
    assert t.due("x", 10.0, 0.0, deadband=1.0)
    assert not t.due("x", 10.5, 0.2, deadband=1.0)
    assert not t.due("x", 12.0, 0.05, deadband=1.0)  # too soon after the last publish
    assert t.due("x", 12.0, 0.2, deadband=1.0)
    assert t.due("x", 12.0, 1.3, deadband=1.0)  # keep-alive
    assert t.due("s", {"a": 1}, 0.0) and not t.due("s", {"a": 1}, 0.1) and t.due("s", {"a": 2}, 0.1)


def test_evse_sim_car_unplugged_opens_and_frees_the_connector() -> None:
    from ccsbus_hw.backends.sim import SimBackend
    from ccsbus_hw.settings import SimSettings

    sim = SimSettings(isolation_time=0.1, plugged=True)
    board = SimBackend(Side.EVSE, sim)
    published: list[tuple[str, Any]] = []
    ctl = HwController(Side.EVSE, HwSettings(sim=sim, auto_pwm=True), board,
                       lambda p, v: published.append((p, v)), lambda r, t: None,
                       get_logger("hw.test"))
    t = 0.0
    for _ in range(5):
        ctl.tick(t)
        t += 0.02
    assert board.pwm == 5.0  # a car in state B: digital communication
    ctl.on_command({"cmd": "cable_check"})
    for _ in range(30):
        ctl.tick(t)
        t += 0.02
    assert ctl.machine.out.contactor is Contactor.CLOSED and ctl.machine.out.lock
    ctl.on_command({"cmd": "plug", "value": "A"})
    for _ in range(50):
        ctl.tick(t)
        t += 0.02
    assert ctl.machine.out.contactor is Contactor.OPEN and not ctl.machine.out.lock
    assert board.pwm == 100.0
    causes = [v.get("cause") for p, v in published if p == "hw/safety" and v.get("step") == "start"]
    assert causes == ["cp_lost"]


def test_evse_sim_supply_command_and_overshoot_fault() -> None:
    from ccsbus_hw.backends.base import CommandError
    from ccsbus_hw.backends.sim import SimBackend
    from ccsbus_hw.settings import SimSettings

    sim = SimSettings(isolation_time=0.05, plugged=True, voltage_slew=5000.0)
    board = SimBackend(Side.EVSE, sim)
    published: list[tuple[str, Any]] = []
    errors: list[str] = []
    ctl = HwController(Side.EVSE, HwSettings(sim=sim), board,
                       lambda p, v: published.append((p, v)), lambda r, t: errors.append(r),
                       get_logger("hw.test"))
    ctl.on_command({"cmd": "supply", "value": {"max_voltage": 450}})
    ctl.on_command({"cmd": "supply", "value": {"max_voltage": 9000}})
    assert errors and "from 0 to the configured 500" in errors[-1]
    t = 0.0
    ctl.on_command({"cmd": "plug", "value": "C"})
    ctl.on_command({"cmd": "cable_check"})
    for _ in range(20):
        ctl.tick(t)
        t += 0.02
    ctl.on_topic("target_voltage", 445)
    for _ in range(20):
        ctl.tick(t)
        t += 0.02
    assert ("charger_max_voltage", 450.0) in published
    assert ctl.machine.shutdown.value == "idle"
    ctl.on_command({"cmd": "fault", "value": "overshoot"})  # 445 V * 1.1 > 450 V * 1.05
    for _ in range(20):
        ctl.tick(t)
        t += 0.02
    causes = [v.get("cause") for p, v in published if p == "hw/safety" and v.get("step") == "start"]
    assert causes == ["overvoltage"]
    try:
        board.command("supply", "lots")
    except CommandError as exc:
        assert "an object with max_voltage" in str(exc)
    else:
        raise AssertionError("a bad supply value was accepted")
