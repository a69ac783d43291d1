"""The simulated power stage and battery behind the backend interface."""

from __future__ import annotations

from typing import Any, Protocol

from ..plant import EvsePlant, Fault, PeerView, PevPlant, VirtualCar, VirtualCharger
from ..safety import Isolation, Side
from ..settings import SimSettings
from .base import BatteryReading, CommandError, CpReading, HwBackend, SupplyReading


class PeerSource(Protocol):
    def view(self, now: float) -> PeerView: ...


_PLUG_WORDS = {"A": "A", "B": "B", "C": "C", "D": "D", "out": "A", "in": "B"}


class SimBackend(HwBackend):
    name = "sim"

    def __init__(self, side: Side, cfg: SimSettings, precharge_delta: float = 20.0,
                 peer: PeerSource | None = None) -> None:
        self.side = side
        self.cfg = cfg
        self.peer = peer
        self.cp = "B"
        self.pwm = 100.0
        self.closed_cmd = False
        self.locked = False
        self.target_voltage = 0.0
        self.target_current = 0.0
        self.cable_check = False
        self.supply_enabled = False
        self.faults: set[Fault] = set()
        self.evse = EvsePlant(cfg, faults=self.faults)
        self.pev = PevPlant(cfg, faults=self.faults)
        self.car = VirtualCar(PevPlant(cfg), cp_state="B" if cfg.plugged else "A",
                              precharge_delta=precharge_delta,
                              follows_session=cfg.car_follows_session)
        self.charger = VirtualCharger(EvsePlant(cfg), plugged=cfg.plugged)
        self._peer_view = (PeerView(cp_state="A", present=False) if peer is not None
                           else self.car.view() if side is Side.EVSE else self.charger.view())

    # ---- outputs
    def set_cp_state(self, state: str) -> None:
        self.cp = state

    def set_pwm(self, duty: float) -> None:
        self.pwm = duty

    def set_contactors(self, closed: bool) -> None:
        self.closed_cmd = closed

    def set_lock(self, locked: bool) -> None:
        self.locked = locked

    def set_supply(self, voltage: float, current: float) -> None:
        self.target_voltage, self.target_current = voltage, current

    def set_mode(self, *, cable_check: bool, supply_enabled: bool) -> None:
        """EVSE: what the safety machine allows the supply to do this tick."""
        self.cable_check, self.supply_enabled = cable_check, supply_enabled

    # ---- simulation
    def poll(self, now: float, dt: float) -> None:
        if dt <= 0:
            return
        if self.side is Side.EVSE:
            view = self.peer.view(now) if self.peer is not None else self.car.view()
            self._peer_view = view
            self.evse.step(dt, closed_cmd=self.closed_cmd, cable_check=self.cable_check,
                           supply_enabled=self.supply_enabled, target_voltage=self.target_voltage,
                           target_current=self.target_current, peer=view)
            if self.peer is None:
                self.car.step(dt, self.evse)
        else:
            view = self.peer.view(now) if self.peer is not None else self.charger.view()
            self._peer_view = view
            self.pev.step(dt, closed_cmd=self.closed_cmd, peer=view)
            if self.peer is None:
                self.charger.step(dt, self.pev, self.cp, self.pev.target_current)

    # ---- inputs
    def read_inlet_voltage(self) -> float:
        return self.evse.cable_voltage if self.side is Side.EVSE else self.pev.inlet_voltage

    def read_contactor_feedback(self) -> bool:
        return (self.evse if self.side is Side.EVSE else self.pev).contactors_closed

    def read_lock_feedback(self) -> bool:
        return self.locked

    def read_current(self) -> float:
        return self.evse.current if self.side is Side.EVSE else self.pev.current

    def read_supply(self) -> SupplyReading | None:
        if self.side is Side.PEV:
            return None
        return SupplyReading(voltage=self.evse.cable_voltage, current=self.evse.current,
                             max_voltage=self.evse.max_voltage, max_current=self.evse.max_current,
                             supply_voltage=self.evse.supply_voltage)

    def read_cp(self) -> CpReading:
        if self.side is Side.EVSE:
            return CpReading(state=self._peer_view.cp_state, duty=self.pwm)
        # a connected car pulls the pilot to B/C whether the charger oscillates or not
        plugged = self._peer_view.present
        return CpReading(state=self.cp if plugged else "A", duty=self._peer_view.duty)

    def read_isolation(self) -> Isolation:
        return self.evse.isolation if self.side is Side.EVSE else Isolation.UNKNOWN

    def read_battery(self) -> BatteryReading | None:
        if self.side is Side.EVSE:
            return None
        return BatteryReading(voltage=self.pev.battery_voltage, soc=self.pev.soc,
                              target_voltage=self.pev.target_voltage,
                              target_current=self.pev.target_current,
                              capacity_wh=self.cfg.capacity_wh)

    def plugged(self) -> bool:
        return self.read_cp().state != "A"

    # ---- hw/cmd extras
    def command(self, cmd: str, value: Any) -> None:
        if cmd == "fault":
            try:
                fault = Fault(str(value))
            except ValueError:
                raise CommandError(f"unknown fault {value!r}; faults are "
                                   + ", ".join(f.value for f in Fault)) from None
            if fault is Fault.NONE:
                self.faults.clear()
            else:
                self.faults.add(fault)
            return
        if cmd == "supply" and self.side is Side.EVSE:
            if not isinstance(value, dict) or not value.keys() <= {"max_voltage", "max_current"}:
                raise CommandError(f"supply value {value!r}: an object with max_voltage and/or "
                                   "max_current")
            for key, limit in (("max_voltage", self.cfg.max_voltage),
                               ("max_current", self.cfg.max_current)):
                if key not in value:
                    continue
                number = value[key]
                if isinstance(number, bool) or not isinstance(number, int | float) \
                        or not 0 < number <= limit:
                    raise CommandError(f"supply {key} {number!r}: from 0 to the configured {limit:g}")
                setattr(self.evse, key, float(number))
            return
        if cmd == "plug":
            if self.peer is not None:
                raise CommandError("plug is decided by the peer stack on the simulated cable")
            word = (("B" if value else "A") if isinstance(value, bool)
                    else _PLUG_WORDS.get(str(value), ""))
            if not word:
                raise CommandError(f"plug value {value!r}: use A, B, C, D, in, out, true or false")
            if self.side is Side.EVSE:
                self.car.cp_state = word
            else:
                self.charger.plugged = word != "A"
            return
        super().command(cmd, value)
