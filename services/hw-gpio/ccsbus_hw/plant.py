"""The simulated power stage, battery and cable: pure dataclasses stepped with `dt`, no I/O.

Each stack simulates its own side (EVSE: supply and output contactors; PEV: battery, inlet and port
contactors). What the other end of the cable shows comes in as a `PeerView`: read from the peer
stack's `hw/state` / `cp/state` (the simulated cable between two stacks) or produced by a small
built-in counterpart when a stack runs alone (`VirtualCar`, `VirtualCharger`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from .safety import Isolation
from .settings import SimSettings


class Fault(Enum):
    NONE = "none"
    ISOLATION = "isolation"          # the isolation check (or the running monitor) reports a fault
    OVERSHOOT = "overshoot"          # the supply overshoots its voltage setpoint by 10 %
    STUCK_CONTACTOR = "stuck_contactor"  # the contactor stays physically closed once closed


@dataclass(frozen=True)
class PeerView:
    """The other end of the cable as this side sees it."""

    contactors_closed: bool = False
    voltage: float = 0.0       # EVSE peer: its output voltage; PEV peer: its battery voltage
    current: float = 0.0       # EVSE peer: the current it delivers
    cp_state: str = "A"        # the car's CP state (what an EVSE measures)
    duty: float = 100.0        # the charger's PWM duty (what a car measures)
    present: bool = True       # the cable connects the two sides (the car is plugged in)


def _slew(value: float, target: float, rate: float, dt: float) -> float:
    step = rate * dt
    if abs(target - value) <= step:
        return target
    return value + math.copysign(step, target - value)


def _decay(value: float, tau: float, dt: float) -> float:
    out = value * math.exp(-dt / tau)
    return 0.0 if abs(out) < 0.05 else out


@dataclass
class EvsePlant:
    """Charger side: supply with slew-limited voltage and current, output contactors, IMD."""

    cfg: SimSettings
    supply_voltage: float = 0.0
    current: float = 0.0
    cable_voltage: float = 0.0
    contactors_closed: bool = False   # physical state (differs from the command when stuck)
    isolation: Isolation = Isolation.UNKNOWN
    iso_elapsed: float = 0.0
    faults: set[Fault] = field(default_factory=set)
    max_voltage: float = 0.0  # the supply's limits; 0 takes the configured ones
    max_current: float = 0.0
    _checking: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.max_voltage = self.max_voltage or self.cfg.max_voltage
        self.max_current = self.max_current or self.cfg.max_current

    def step(self, dt: float, *, closed_cmd: bool, cable_check: bool, supply_enabled: bool,
             target_voltage: float, target_current: float, peer: PeerView) -> None:
        if closed_cmd:
            self.contactors_closed = True
        elif not (Fault.STUCK_CONTACTOR in self.faults and self.contactors_closed):
            self.contactors_closed = False
        if cable_check:
            v_set = min(self.cfg.cable_check_voltage, self.max_voltage)
        elif supply_enabled and target_voltage > 0:
            v_set = min(target_voltage, self.max_voltage)
        elif supply_enabled:
            # no target from the car yet (between the isolation check and PreCharge): hold, so the
            # output does not sweep down through the battery voltage and back up again
            v_set = self.supply_voltage
        else:
            v_set = 0.0
        if Fault.OVERSHOOT in self.faults:
            v_set *= 1.1
        self.supply_voltage = _slew(self.supply_voltage, v_set, self.cfg.voltage_slew, dt)
        circuit = self.contactors_closed and peer.contactors_closed
        if circuit:
            demand = min(target_current, self.max_current) if supply_enabled else 0.0
            self.current = _slew(self.current, max(0.0, demand), self.cfg.current_slew, dt)
        else:
            self.current = 0.0  # an open circuit carries no current
        if peer.contactors_closed:
            self.cable_voltage = peer.voltage  # the battery holds the cable
        elif self.contactors_closed:
            self.cable_voltage = self.supply_voltage
        else:
            self.cable_voltage = _decay(self.cable_voltage, self.cfg.discharge_tau, dt)
        self._isolation(dt, cable_check)

    def _isolation(self, dt: float, cable_check: bool) -> None:
        if not self.contactors_closed:
            self.isolation, self.iso_elapsed, self._checking = Isolation.UNKNOWN, 0.0, False
            return
        if cable_check and not self._checking:
            self.isolation, self.iso_elapsed = Isolation.ONGOING, 0.0
        self._checking = cable_check
        if self.isolation is Isolation.ONGOING:
            self.iso_elapsed += dt
            if self.iso_elapsed >= self.cfg.isolation_time:
                self.isolation = (Isolation.FAULT if Fault.ISOLATION in self.faults
                                  else Isolation.VALID)
        elif self.isolation is Isolation.VALID and Fault.ISOLATION in self.faults:
            self.isolation = Isolation.FAULT


@dataclass
class PevPlant:
    """Car side: battery (SoC integrates energy), port contactors, inlet voltage."""

    cfg: SimSettings
    soc: float = 0.0
    inlet_voltage: float = 0.0
    current: float = 0.0
    contactors_closed: bool = False
    energy_wh: float = 0.0
    faults: set[Fault] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.soc == 0.0:
            self.soc = self.cfg.start_soc

    @property
    def battery_voltage(self) -> float:
        span = self.cfg.battery_full_v - self.cfg.battery_empty_v
        return self.cfg.battery_empty_v + span * self.soc / 100.0

    @property
    def target_voltage(self) -> float:
        return self.cfg.battery_full_v

    @property
    def target_current(self) -> float:
        if self.soc >= 100.0:
            return 0.0
        if self.soc > 90.0:  # constant-voltage phase: taper to zero at full
            return self.cfg.charge_current * (100.0 - self.soc) / 10.0
        return self.cfg.charge_current

    def step(self, dt: float, *, closed_cmd: bool, peer: PeerView) -> None:
        if closed_cmd:
            self.contactors_closed = True
        elif not (Fault.STUCK_CONTACTOR in self.faults and self.contactors_closed):
            self.contactors_closed = False
        if self.contactors_closed:
            self.inlet_voltage = self.battery_voltage
        elif peer.contactors_closed:
            self.inlet_voltage = peer.voltage
        else:
            self.inlet_voltage = _decay(self.inlet_voltage, self.cfg.discharge_tau, dt)
        self.current = peer.current if (self.contactors_closed and peer.contactors_closed) else 0.0
        wh = self.battery_voltage * self.current * dt / 3600.0 * self.cfg.speedup
        self.energy_wh += wh
        self.soc = min(100.0, max(0.0, self.soc + 100.0 * wh / self.cfg.capacity_wh))


@dataclass
class VirtualCar:
    """The car a standalone EVSE stack charges: closes its contactors once precharged in state C."""

    battery: PevPlant
    cp_state: str = "A"
    precharge_delta: float = 20.0
    follows_session: bool = True
    _charged: bool = field(default=False, repr=False)

    def view(self) -> PeerView:
        return PeerView(contactors_closed=self.battery.contactors_closed,
                        voltage=self.battery.battery_voltage, cp_state=self.cp_state,
                        present=self.cp_state != "A")

    def step(self, dt: float, evse: EvsePlant) -> None:
        if self.follows_session:
            self._follow_session(evse)
        evse_view = PeerView(contactors_closed=evse.contactors_closed, voltage=evse.supply_voltage,
                             current=evse.current)
        want = self.cp_state == "C" and evse.contactors_closed and (
            self.battery.contactors_closed
            or abs(evse.supply_voltage - self.battery.battery_voltage) <= self.precharge_delta)
        if self.battery.contactors_closed and evse.current >= 1.0:
            want = True  # a real car never opens under load either
        self.battery.step(dt, closed_cmd=want, peer=evse_view)
        self._charged = self._charged or self.battery.contactors_closed

    def _follow_session(self, evse: EvsePlant) -> None:
        """Play the CP part of a DC car whose V2G side is a real peer the charger talks to.

        The charger's isolation check is the first thing a car on a DC session sees in state C, and
        the charger opening its contactors after a charge is the last; a stand-in car that stayed
        in B would have the charger (rightly) refuse to power up.
        """
        if self.cp_state == "B" and evse.isolation is Isolation.ONGOING:
            self.cp_state = "C"
        elif (self.cp_state == "C" and self._charged and not evse.contactors_closed
              and not self.battery.contactors_closed):
            self.cp_state, self._charged = "B", False


@dataclass
class VirtualCharger:
    """The charger a standalone PEV stack sees: precharges and delivers in CP state C."""

    supply: EvsePlant
    plugged: bool = True

    def view(self) -> PeerView:
        return PeerView(contactors_closed=self.supply.contactors_closed,
                        voltage=self.supply.cable_voltage if self.supply.contactors_closed
                        else self.supply.supply_voltage,
                        current=self.supply.current, duty=5.0 if self.plugged else 100.0,
                        present=self.plugged)

    def step(self, dt: float, car: PevPlant, car_cp: str, target_current: float) -> None:
        active = self.plugged and car_cp == "C"
        closed = active or self.supply.current >= 1.0
        car_view = PeerView(contactors_closed=car.contactors_closed, voltage=car.battery_voltage,
                            cp_state=car_cp)
        self.supply.step(dt, closed_cmd=closed, cable_check=False, supply_enabled=active,
                         target_voltage=car.battery_voltage if active else 0.0,
                         target_current=target_current if active else 0.0, peer=car_view)
