"""The one interface every hardware backend implements.

The service calls the setters only when an output changes and `poll` once per control tick; the
readers return the latest value the backend has (None where the board has no such input).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from ..safety import Isolation


class CommandError(ValueError):
    """A backend-specific hw/cmd could not be carried out; the message says why."""


@dataclass(frozen=True)
class CpReading:
    state: str             # A..F
    duty: float | None = None
    voltage: float | None = None


@dataclass(frozen=True)
class SupplyReading:
    voltage: float
    current: float
    max_voltage: float | None = None
    max_current: float | None = None
    supply_voltage: float | None = None  # before the output contactors, where known


@dataclass(frozen=True)
class BatteryReading:
    voltage: float
    soc: float | None = None
    target_voltage: float | None = None
    target_current: float | None = None
    capacity_wh: float | None = None


class HwBackend(ABC):
    name = "abstract"
    _errors: list[str]

    def report(self, reason: str) -> None:
        """Record bad input from the board; the service logs and publishes it on hw/error."""
        if not hasattr(self, "_errors"):
            self._errors = []
        self._errors.append(reason)

    def drain_errors(self) -> list[str]:
        errors = getattr(self, "_errors", [])
        self._errors = []
        return errors

    # ---- outputs
    @abstractmethod
    def set_cp_state(self, state: str) -> None:
        """PEV: switch the CP resistor for state A/B/C."""

    @abstractmethod
    def set_pwm(self, duty: float) -> None:
        """EVSE: CP PWM duty in percent (100 = constant +12 V, no PWM)."""

    @abstractmethod
    def set_contactors(self, closed: bool) -> None:
        """Port / output contactors."""

    @abstractmethod
    def set_lock(self, locked: bool) -> None:
        """Connector lock motor."""

    def set_supply(self, voltage: float, current: float) -> None:  # noqa: B027 - optional
        """EVSE: power supply setpoints (boards without a controllable supply ignore them)."""

    # ---- inputs
    def poll(self, now: float, dt: float) -> None:  # noqa: B027 - optional
        """Advance: read pending serial lines, step the simulation."""

    @abstractmethod
    def read_inlet_voltage(self) -> float | None:
        """Voltage at the inlet / connector, None when unknown."""

    def read_contactor_feedback(self) -> bool | None:
        return None

    def read_lock_feedback(self) -> bool | None:
        return None

    def read_supply(self) -> SupplyReading | None:
        return None

    def read_cp(self) -> CpReading | None:
        return None

    def read_stop_button(self) -> bool:
        return False

    def read_isolation(self) -> Isolation:
        return Isolation.UNKNOWN

    def read_battery(self) -> BatteryReading | None:
        return None

    def read_current(self) -> float | None:
        """Current through the contactors, where the backend measures it."""
        supply = self.read_supply()
        return supply.current if supply is not None else None

    def plugged(self) -> bool | None:
        return None

    # ---- extras
    def command(self, cmd: str, value: Any) -> None:
        """Backend-specific hw/cmd (plug, fault); raise CommandError when not supported."""
        raise CommandError(f"backend {self.name} does not support hw/cmd {cmd!r}")

    def close(self) -> None:  # noqa: B027 - optional
        """Release the hardware (outputs to their safe state where possible)."""
