"""GPIO boards through Adafruit-Blinka: digital outputs/inputs, PWM, an ADS1115 on I2C.

Pin names come from `hw.pins` (names of the `board` module, e.g. D17 or P9_41); a pin listed in
`pins.active_low` is inverted. The modules are looked up at run time so tests can hand in fakes
(or run Blinka with BLINKA_OS_AGNOSTIC=1).
"""

from __future__ import annotations

import importlib
import time
from types import ModuleType
from typing import Any, Protocol

from ..cp import classify
from ..settings import BlinkaPins
from .base import CpReading, HwBackend

PWM_FREQUENCY = 1000  # Hz, the CP oscillator of IEC 61851-1


class I2CBus(Protocol):
    def try_lock(self) -> bool: ...
    def unlock(self) -> None: ...
    def writeto(self, address: int, buffer: bytes) -> None: ...
    def readfrom_into(self, address: int, buffer: bytearray) -> None: ...


class Ads1115:
    """Single-shot reads of one ADS1115 channel, +-4.096 V range, 860 samples/s."""

    REG_CONVERSION = 0x00
    REG_CONFIG = 0x01
    FULL_SCALE = 4.096

    def __init__(self, i2c: I2CBus, address: int = 0x48) -> None:
        self.i2c = i2c
        self.address = address

    @staticmethod
    def config_word(channel: int) -> int:
        # OS=1 start, MUX=1xx single-ended AINx, PGA=001 (+-4.096 V), MODE=1 single shot,
        # DR=111 (860 SPS), comparator disabled (11)
        return 0x8000 | ((4 + channel) << 12) | (0b001 << 9) | 0x0100 | (0b111 << 5) | 0x0003

    def read_volts(self, channel: int) -> float:
        word = self.config_word(channel)
        while not self.i2c.try_lock():
            time.sleep(0.0005)
        try:
            self.i2c.writeto(self.address, bytes([self.REG_CONFIG, word >> 8, word & 0xFF]))
            time.sleep(0.0015)  # one conversion at 860 SPS
            self.i2c.writeto(self.address, bytes([self.REG_CONVERSION]))
            buf = bytearray(2)
            self.i2c.readfrom_into(self.address, buf)
        finally:
            self.i2c.unlock()
        raw = int.from_bytes(buf, "big", signed=True)
        return raw * self.FULL_SCALE / 32768.0


class BlinkaBackend(HwBackend):
    name = "blinka"

    def __init__(self, pins: BlinkaPins, *, board: ModuleType | None = None,
                 digitalio: ModuleType | None = None, pwmio: ModuleType | None = None,
                 i2c: I2CBus | None = None, use_adc: bool = True) -> None:
        self.pins = pins
        self.board = board or importlib.import_module("board")
        self.dio = digitalio or importlib.import_module("digitalio")
        self._pwmio = pwmio
        self._inverted = set(pins.active_low)
        self._outputs: dict[str, Any] = {}
        self._inputs: dict[str, Any] = {}
        for role in ("cp_switch", "contactor", "contactor2", "lock"):
            self._make_output(role)
        for role in ("contactor_feedback", "lock_feedback", "stop_button"):
            self._make_input(role)
        self._pwm: Any = None
        self.adc: Ads1115 | None = None
        if use_adc:
            if i2c is None:
                busio = importlib.import_module("busio")
                i2c = busio.I2C(self.board.SCL, self.board.SDA)
            self.adc = Ads1115(i2c, pins.adc_address)
        self.duty = 100.0

    def _pin(self, role: str) -> Any:
        name = getattr(self.pins, role)
        if not name:
            return None
        try:
            return getattr(self.board, name)
        except AttributeError:
            raise ValueError(f"hw.pins.{role}: the board has no pin {name!r}") from None

    def _make_output(self, role: str) -> None:
        pin = self._pin(role)
        if pin is None:
            return
        io = self.dio.DigitalInOut(pin)
        io.direction = self.dio.Direction.OUTPUT
        io.value = role in self._inverted  # inactive level
        self._outputs[role] = io

    def _make_input(self, role: str) -> None:
        pin = self._pin(role)
        if pin is None:
            return
        io = self.dio.DigitalInOut(pin)
        io.direction = self.dio.Direction.INPUT
        self._inputs[role] = io

    def _write(self, role: str, active: bool) -> None:
        io = self._outputs.get(role)
        if io is not None:
            io.value = active != (role in self._inverted)

    def _read(self, role: str) -> bool | None:
        io = self._inputs.get(role)
        if io is None:
            return None
        return bool(io.value) != (role in self._inverted)

    # ---- outputs
    def set_cp_state(self, state: str) -> None:
        self._write("cp_switch", state == "C")

    def set_pwm(self, duty: float) -> None:
        self.duty = duty
        if not self.pins.pwm:
            return
        if self._pwm is None:
            pwmio = self._pwmio or importlib.import_module("pwmio")
            self._pwm = pwmio.PWMOut(self._pin("pwm"), frequency=PWM_FREQUENCY, duty_cycle=0xFFFF)
        level = duty if "pwm" not in self._inverted else 100.0 - duty
        self._pwm.duty_cycle = max(0, min(0xFFFF, round(level / 100.0 * 0xFFFF)))

    def set_contactors(self, closed: bool) -> None:
        self._write("contactor", closed)
        self._write("contactor2", closed)

    def set_lock(self, locked: bool) -> None:
        self._write("lock", locked)

    # ---- inputs
    def read_inlet_voltage(self) -> float | None:
        if self.adc is None:
            return None
        return self.adc.read_volts(self.pins.adc_channel) * self.pins.adc_scale

    def read_contactor_feedback(self) -> bool | None:
        return self._read("contactor_feedback")

    def read_lock_feedback(self) -> bool | None:
        return self._read("lock_feedback")

    def read_stop_button(self) -> bool:
        return bool(self._read("stop_button"))

    def read_cp(self) -> CpReading | None:
        if self.adc is None or self.pins.cp_adc_channel < 0:
            return None
        volts = self.adc.read_volts(self.pins.cp_adc_channel) * self.pins.cp_adc_scale
        return CpReading(state=classify(volts), duty=self.duty, voltage=round(volts, 2))

    def close(self) -> None:
        # releasing the pins drops the relay drivers to their unpowered level
        for io in [*self._outputs.values(), *self._inputs.values()]:
            io.deinit()
        if self._pwm is not None:
            self._pwm.deinit()
