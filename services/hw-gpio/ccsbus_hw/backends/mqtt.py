"""External hardware that speaks the user-facing topics itself.

The hardware follows `cpstate` / `relay_request` / `lock_request` (PEV) on its own and publishes
`inlet_voltage`, `battery_voltage` (PEV) or `charger_voltage` / `charger_current` (EVSE). This
backend only watches: its setters drive nothing, its readers return what the topics said, and the
service's safety machine reports (on hw/safety) what it would have refused.
"""

from __future__ import annotations

from typing import Any

from ..safety import Side
from .base import BatteryReading, HwBackend, SupplyReading

PEV_INPUTS = ("inlet_voltage", "battery_voltage", "soc", "charger_current", "charger_voltage")
EVSE_INPUTS = ("charger_voltage", "charger_current", "charger_max_voltage", "charger_max_current")


class MqttBackend(HwBackend):
    name = "mqtt"

    def __init__(self, side: Side) -> None:
        self.side = side
        self.values: dict[str, float] = {}

    def inputs(self) -> tuple[str, ...]:
        return PEV_INPUTS if self.side is Side.PEV else EVSE_INPUTS

    def feed(self, path: str, value: Any) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.values[path] = float(value)

    def set_cp_state(self, state: str) -> None:
        """The external hardware follows `cpstate` itself."""

    def set_pwm(self, duty: float) -> None:
        """The external hardware owns the CP oscillator."""

    def set_contactors(self, closed: bool) -> None:
        """The external hardware follows `relay_request` itself."""

    def set_lock(self, locked: bool) -> None:
        """The external hardware follows `lock_request` itself."""

    def read_inlet_voltage(self) -> float | None:
        if self.side is Side.PEV:
            return self.values.get("inlet_voltage")
        return self.values.get("charger_voltage")

    def read_current(self) -> float | None:
        return self.values.get("charger_current")

    def read_supply(self) -> SupplyReading | None:
        if self.side is Side.PEV or "charger_voltage" not in self.values:
            return None
        return SupplyReading(voltage=self.values["charger_voltage"],
                             current=self.values.get("charger_current", 0.0),
                             max_voltage=self.values.get("charger_max_voltage"),
                             max_current=self.values.get("charger_max_current"))

    def read_battery(self) -> BatteryReading | None:
        if self.side is Side.EVSE or "battery_voltage" not in self.values:
            return None
        return BatteryReading(voltage=self.values["battery_voltage"], soc=self.values.get("soc"))
