"""One control cycle: read the backend, step the safety machine, drive the outputs, publish.

Nothing here waits for the broker: `publish` only hands messages to the MQTT client's queue, so the
hardware actions of a safe shutdown happen on time while the broker is gone and the events reach the
broker once it is back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ccsbus.log import EventLog

from .backends.base import CommandError, CpReading, HwBackend
from .backends.mqtt import MqttBackend
from .backends.sim import SimBackend
from .safety import Contactor, Measurements, Outputs, SafetyMachine, Side
from .settings import HwSettings

Publish = Callable[[str, Any], None]
ReportError = Callable[[str, str | None], None]

_MIN_NUMBER_INTERVAL = 0.1  # s between two publishes of one changing measurement


@dataclass
class _Sent:
    value: Any
    time: float


class Throttle:
    """Decides when a value is worth publishing again (change, deadband, keep-alive interval)."""

    def __init__(self, keepalive: float) -> None:
        self.keepalive = keepalive
        self._sent: dict[str, _Sent] = {}

    def due(self, key: str, value: Any, now: float, deadband: float = 0.0) -> bool:
        last = self._sent.get(key)
        if last is None or now - last.time >= self.keepalive:
            changed = True
        elif isinstance(value, int | float) and isinstance(last.value, int | float):
            changed = (abs(value - last.value) > deadband
                       and now - last.time >= _MIN_NUMBER_INTERVAL)
        else:
            changed = value != last.value
        if changed:
            self._sent[key] = _Sent(value, now)
        return changed


def _num(value: float) -> float:
    return round(value, 2)


class HwController:
    def __init__(self, side: Side, settings: HwSettings, backend: HwBackend, publish: Publish,
                 report_error: ReportError, log: EventLog,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.side = side
        self.settings = settings
        self.backend = backend
        self.publish = publish
        self.report_error = report_error
        self.log = log
        self.wall = wall_clock
        self.machine = SafetyMachine(side, settings.safety)
        self.throttle = Throttle(settings.state_interval)
        self.target_voltage = 0.0
        self.target_current = 0.0
        self.bus_battery_voltage: float | None = None
        # current from the bus (PEV: the charger's present current as v2g reports it; EVSE: a
        # supply that publishes charger_current itself); None until heard: unknown counts as live
        self.bus_current: float | None = None
        self._applied: Outputs | None = None
        self._car_connected = False
        self._last_tick: float | None = None
        self.watch_only = isinstance(backend, MqttBackend)

    # ------------------------------------------------------------------ inputs from the bus
    def on_topic(self, path: str, value: Any) -> None:
        match path:
            case "v2g/status":
                online = value == "online"
                if self.machine.v2g_offline == online:
                    self.log.info("v2g status", status=value)
                self.machine.set_v2g_online(online)
            case "cpstate":
                self.machine.request_cp(str(value))
            case "relay_request":
                self.machine.request_contactors(value == "on")
            case "lock_request":
                self.machine.request_lock(value == "lock")
            case "target_voltage" if self.side is Side.EVSE:
                self.target_voltage = float(value)
            case "target_current" if self.side is Side.EVSE:
                self.target_current = float(value)
            case "battery_voltage":
                self.bus_battery_voltage = float(value)
            case "charger_current" if self.side is Side.PEV or self.backend.read_supply() is None:
                self.bus_current = float(value)
            case "hw/cmd":
                self.on_command(value)
        if isinstance(self.backend, MqttBackend) and path in self.backend.inputs():
            self.backend.feed(path, value)

    def on_command(self, cmd: dict[str, Any]) -> None:
        name, value = cmd.get("cmd"), cmd.get("value")
        try:
            match name:
                case "cable_check":
                    if self.side is not Side.EVSE:
                        raise CommandError("cable_check is a charger-side (EVSE) command")
                    self.machine.request_cable_check()
                case "contactor":
                    if value in ("close", "on", True):
                        self.machine.request_contactors(True)
                    elif value in ("open", "off", False):
                        self.machine.request_contactors(False)
                    else:
                        raise CommandError(f"contactor value {value!r}: use close or open")
                case "lock":
                    if value not in ("lock", "unlock"):
                        raise CommandError(f"lock value {value!r}: use lock or unlock")
                    self.machine.request_lock(value == "lock")
                case "pwm":
                    if self.side is not Side.EVSE:
                        raise CommandError("pwm is a charger-side (EVSE) command")
                    if isinstance(value, bool) or not isinstance(value, int | float) \
                            or not 0 <= value <= 100:
                        raise CommandError(f"pwm value {value!r}: a duty from 0 to 100 %")
                    self.machine.request_pwm(float(value))
                case "safe_shutdown":
                    self.machine.request_safe_shutdown()
                case _:
                    self.backend.command(str(name), value)
        except CommandError as exc:
            self.log.warning("hw/cmd refused", cmd=name, reason=str(exc))
            self.report_error(str(exc), "hw/cmd")

    def on_connection(self, up: bool, now: float | None = None) -> None:
        self.machine.set_broker_up(time.monotonic() if now is None else now, up)

    # ------------------------------------------------------------------ the cycle
    def measure(self) -> Measurements:
        b = self.backend
        inlet = b.read_inlet_voltage()
        current = b.read_current()
        battery = b.read_battery()
        cp = b.read_cp()
        supply = b.read_supply() if self.side is Side.EVSE else None
        return Measurements(
            current=(self.bus_current if self.bus_current is not None else math.inf)
            if current is None else current,
            inlet_voltage=math.inf if inlet is None else inlet,  # unknown counts as live
            battery_voltage=battery.voltage if battery is not None else self.bus_battery_voltage,
            isolation=b.read_isolation(),
            contactor_feedback=b.read_contactor_feedback(),
            lock_feedback=b.read_lock_feedback(),
            cp_state=cp.state if cp is not None else None,
            stop_button=b.read_stop_button(),
            voltage_limit=supply.max_voltage if supply is not None else None,
        )

    def tick(self, now: float) -> Outputs:
        dt = 0.0 if self._last_tick is None else now - self._last_tick
        self._last_tick = now
        self.backend.poll(now, dt)
        meas = self.measure()
        if self._applied is None:
            self.machine.recover(now, meas)
        self._auto_pwm(meas.cp_state)
        out = self.machine.step(now, meas)
        self._apply(out)
        for event in self.machine.drain_events():
            self.publish("hw/safety", event.as_payload(self.wall()))
        for reason in self.backend.drain_errors():
            self.log.warning("bad input from the board", reason=reason)
            self.report_error(reason, None)
        self._publish_state(now, meas, out)
        return out

    def _auto_pwm(self, cp_state: str | None) -> None:
        if self.side is not Side.EVSE or cp_state is None:
            return
        connected = cp_state in ("B", "C", "D")
        if connected != self._car_connected:
            self._car_connected = connected
            if self.settings.auto_pwm:
                self.machine.request_pwm(5.0 if connected else 100.0)
            if not connected:  # the car is gone: free the connector once it is safe to
                self.machine.request_lock(False)

    def _apply(self, out: Outputs) -> None:
        prev = self._applied
        b = self.backend
        if prev is None or prev.contactors_closed != out.contactors_closed:
            b.set_contactors(out.contactors_closed)
        # at start the lock is left where it is unless it must lock: releasing it is a decision
        # the machine takes later, with the contactors open and the voltage known to be gone
        if (prev is None and out.lock) or (prev is not None and prev.lock != out.lock):
            b.set_lock(out.lock)
        if self.side is Side.PEV and (prev is None or prev.cp != out.cp):
            b.set_cp_state(out.cp)
        if self.side is Side.EVSE:
            if prev is None or prev.pwm != out.pwm:
                b.set_pwm(out.pwm)
            if out.supply_enabled:
                b.set_supply(self.target_voltage, self.target_current)
            else:
                b.set_supply(0.0, 0.0)
            if isinstance(b, SimBackend):
                b.set_mode(cable_check=out.cable_check, supply_enabled=out.supply_enabled)
        if prev is None or prev != out:
            self.log.info("outputs", contactors=out.contactor.value, lock=out.lock, cp=out.cp,
                          pwm=out.pwm, supply=out.supply_enabled, cable_check=out.cable_check)
        self._applied = out

    # ------------------------------------------------------------------ publishing
    def _contactor_word(self, out: Outputs, meas: Measurements) -> str:
        fb = meas.contactor_feedback
        if out.contactor is Contactor.OPENING:
            return "opening"
        if out.contactor is Contactor.CLOSED:
            return "closing" if fb is False else "closed"
        return "opening" if fb else "open"

    def _lock_word(self, out: Outputs, meas: Measurements) -> str:
        fb = meas.lock_feedback
        if out.lock:
            return "locking" if fb is False else "locked"
        return "unlocking" if fb else "unlocked"

    def _publish_state(self, now: float, meas: Measurements, out: Outputs) -> None:
        b = self.backend
        supply = b.read_supply()
        battery = b.read_battery()
        cp = b.read_cp()
        if cp is None and self.side is Side.PEV:
            cp = CpReading(state=out.cp)
        state: dict[str, Any] = {
            "backend": b.name,
            "role": self.side.value,
            "contactors": self._contactor_word(out, meas),
            "lock": self._lock_word(out, meas),
            "isolation": meas.isolation.value,
            "shutdown": self.machine.shutdown.value,
            "latched": self.machine.latched,
        }
        if math.isfinite(meas.current):
            state["present_current"] = _num(meas.current)
        if math.isfinite(meas.inlet_voltage):
            state["inlet_voltage"] = _num(meas.inlet_voltage)
        if supply is not None:
            state["present_voltage"] = _num(supply.voltage)
            if supply.supply_voltage is not None:
                state["supply_voltage"] = _num(supply.supply_voltage)
        elif math.isfinite(meas.inlet_voltage):
            state["present_voltage"] = _num(meas.inlet_voltage)
        if meas.battery_voltage is not None:
            state["battery_voltage"] = _num(meas.battery_voltage)
        plugged = b.plugged()
        if plugged is not None:
            state["plugged"] = plugged
        if cp is not None:
            state["cp"] = cp.state
        discrete = {k: v for k, v in state.items() if not isinstance(v, float)}
        # every throttle sees the value (no short-circuit), so each keeps its own last-sent
        analog = [self.throttle.due(f"hw/state.{k}", v, now, deadband=1.0)
                  for k, v in state.items() if isinstance(v, float)]
        if self.throttle.due("hw/state", discrete, now) | any(analog):
            self.publish("hw/state", {**state, "time": self.wall()})
        if cp is not None:
            cp_payload: dict[str, Any] = {"state": cp.state}
            if cp.duty is not None:
                cp_payload["duty"] = cp.duty
            if cp.voltage is not None:
                cp_payload["voltage"] = cp.voltage
            if self.throttle.due("cp/state", cp_payload, now):
                self.publish("cp/state", {**cp_payload, "time": self.wall()})
        if self.watch_only:
            return
        numbers: list[tuple[str, float | None, float]] = []
        if self.side is Side.PEV:
            if math.isfinite(meas.inlet_voltage):
                numbers.append(("inlet_voltage", meas.inlet_voltage, 1.0))
            if battery is not None:
                numbers += [("battery_voltage", battery.voltage, 0.5),
                            ("soc", battery.soc, 0.1),
                            ("target_voltage", battery.target_voltage, 0.5),
                            ("target_current", battery.target_current, 0.5),
                            ("battery_capacity", battery.capacity_wh, 1.0)]
        elif supply is not None:
            numbers += [("charger_max_voltage", supply.max_voltage, 0.5),
                        ("charger_max_current", supply.max_current, 0.5),
                        ("charger_voltage", supply.voltage, 1.0),
                        ("charger_current", supply.current, 0.5)]
        for path, value, deadband in numbers:
            if value is not None and self.throttle.due(path, _num(value), now, deadband):
                self.publish(path, _num(value))
