"""celeron55's board (serial lines).

Host -> board: `cp=<0|1>` (1 = state C), `contactor=<0|1>`, `lock`, `unlock`, `disp0=`..`disp2=`.
Board -> host: `inlet_v=`, `dc_link_v=`, `cp_pwm=`, `max_charge_a=`, `soc_percent=`,
`contactor_confirmed=`, `plugged_in=` (and the echoes `cp_output_state=`,
`ccs_contactor_wanted_closed=`). Lines end with `\\n`.
"""

from __future__ import annotations

from typing import Any

from .base import BatteryReading, CpReading, HwBackend
from .serialline import SerialLines

NUMBER_KEYS = ("inlet_v", "dc_link_v", "cp_pwm", "max_charge_a", "soc_percent")
# cp_output_state / ccs_contactor_wanted_closed echo what the board applied
FLAG_KEYS = ("contactor_confirmed", "plugged_in", "cp_output_state", "ccs_contactor_wanted_closed")


def parse_line(line: str) -> tuple[str, float | bool]:
    """`key=value` of one board line; ValueError naming what is wrong."""
    key, sep, raw = line.partition("=")
    if not sep:
        raise ValueError(f"no '=' in {line[:40]!r}")
    key, raw = key.strip(), raw.strip()
    if key in FLAG_KEYS:
        if raw not in ("0", "1"):
            raise ValueError(f"{key} must be 0 or 1, got {raw[:20]!r}")
        return key, raw == "1"
    if key in NUMBER_KEYS:
        try:
            return key, float(raw)
        except ValueError:
            raise ValueError(f"{key} is not a number: {raw[:20]!r}") from None
    raise ValueError(f"unknown key {key[:30]!r}")


class Celeron55Backend(HwBackend):
    name = "celeron55"

    def __init__(self, port: str, baudrate: int, serial_factory: Any = None) -> None:
        self.lines = SerialLines(port, baudrate, serial_factory)
        self.values: dict[str, float | bool] = {}
        self.cp = "B"
        self._last: dict[str, str] = {}

    def _send(self, key: str, line: str) -> None:
        if self._last.get(key) != line:
            self.lines.write_line(line)
            self._last[key] = line

    def set_cp_state(self, state: str) -> None:
        self.cp = state
        self._send("cp", f"cp={1 if state == 'C' else 0}")

    def set_pwm(self, duty: float) -> None:
        """Car-side board: no PWM output."""

    def set_contactors(self, closed: bool) -> None:
        self._send("contactor", f"contactor={1 if closed else 0}")

    def set_lock(self, locked: bool) -> None:
        self._send("lock", "lock" if locked else "unlock")

    def display(self, row: int, text: str) -> None:
        self.lines.write_line(f"disp{max(0, min(2, row))}={text[:20]}")

    def poll(self, now: float, dt: float) -> None:
        for line in self.lines.read_lines():
            if not line:
                continue
            try:
                key, value = parse_line(line)
            except ValueError as exc:
                self.report(f"celeron55 board: {exc}")
                continue
            self.values[key] = value

    def _num(self, key: str) -> float | None:
        value = self.values.get(key)
        return None if value is None or isinstance(value, bool) else float(value)

    def read_inlet_voltage(self) -> float | None:
        return self._num("inlet_v")

    def read_contactor_feedback(self) -> bool | None:
        value = self.values.get("contactor_confirmed")
        return None if value is None else bool(value)

    def plugged(self) -> bool | None:
        value = self.values.get("plugged_in")
        return None if value is None else bool(value)

    def read_cp(self) -> CpReading | None:
        plugged = self.plugged()
        if plugged is None:
            return None
        return CpReading(state=self.cp if plugged else "A", duty=self._num("cp_pwm"))

    def read_battery(self) -> BatteryReading | None:
        voltage = self._num("dc_link_v")
        if voltage is None:
            return None
        return BatteryReading(voltage=voltage, soc=self._num("soc_percent"),
                              target_current=self._num("max_charge_a"))

    def close(self) -> None:
        self.lines.close()
