"""The "Dieter" serial board (19200 baud).

Host -> board: `do000<bits>` with bit0 = CP state C, bit1 = relay 1, bit2 = relay 2 (one decimal
digit, 0..7), `lc<text>` for the OLED. Board -> host: `A0=<adc>` (inlet voltage, raw counts).
Lines end with `\\n`. The board has no contactor or lock feedback and no lock output. The output
line is sent again every `REFRESH` seconds (the board expects to be kept told) and at once on a change.
"""

from __future__ import annotations

from typing import Any

from .base import HwBackend
from .serialline import SerialLines

BIT_CP_C = 1
BIT_RELAY1 = 2
BIT_RELAY2 = 4
REFRESH = 0.5  # s between two repetitions of an unchanged output line


def output_line(cp_c: bool, relay1: bool, relay2: bool) -> str:
    bits = (BIT_CP_C if cp_c else 0) | (BIT_RELAY1 if relay1 else 0) | (BIT_RELAY2 if relay2 else 0)
    return f"do000{bits}"


def parse_adc(line: str) -> int | None:
    """The count of an `A0=<adc>` line, None for any other line; ValueError for a bad count."""
    if not line.startswith("A0="):
        return None
    return int(line[3:].strip())


class DieterBackend(HwBackend):
    name = "dieter"

    def __init__(self, port: str, baudrate: int, volts_per_count: float, relay2: bool = True,
                 serial_factory: Any = None) -> None:
        if volts_per_count <= 0:
            raise ValueError("hw.adc_volts_per_count must be calibrated (> 0) for the dieter board")
        self.lines = SerialLines(port, baudrate, serial_factory)
        self.volts_per_count = volts_per_count
        self.relay2 = relay2
        self.cp_c = False
        self.closed = False
        self.inlet: float | None = None
        self._sent: str | None = None
        self._sent_at = 0.0
        self._now = 0.0
        self._send()

    def _send(self, refresh: bool = False) -> None:
        line = output_line(self.cp_c, self.closed, self.closed and self.relay2)
        if line != self._sent or refresh:
            self.lines.write_line(line)
            self._sent, self._sent_at = line, self._now

    def set_cp_state(self, state: str) -> None:
        self.cp_c = state == "C"
        self._send()

    def set_pwm(self, duty: float) -> None:
        """The board is car-side only: no PWM output."""

    def set_contactors(self, closed: bool) -> None:
        self.closed = closed
        self._send()

    def set_lock(self, locked: bool) -> None:
        """The board has no lock output."""

    def display(self, text: str) -> None:
        self.lines.write_line("lc" + text[:32].replace("\n", " "))

    def poll(self, now: float, dt: float) -> None:
        self._now = now
        if now - self._sent_at >= REFRESH:
            self._send(refresh=True)
        for line in self.lines.read_lines():
            if not line:
                continue
            try:
                count = parse_adc(line)
            except ValueError:
                self.report(f"dieter board: bad A0 line {line[:40]!r}")
                continue
            if count is None:
                self.report(f"dieter board: unknown line {line[:40]!r}")
                continue
            self.inlet = count * self.volts_per_count

    def read_inlet_voltage(self) -> float | None:
        return self.inlet

    def close(self) -> None:
        self.lines.close()
