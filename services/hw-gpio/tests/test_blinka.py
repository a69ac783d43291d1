"""The blinka backend: pins and polarity from config, PWM duty, the ADS1115 protocol.

Fake `board`/`digitalio` modules and a fake I2C ADS1115 check every byte; one test runs the real
Adafruit-Blinka with its simulated board (BLINKA_OS_AGNOSTIC=1) in a child process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass, field
from typing import Any

import pytest

from ccsbus_hw.backends.blinka import Ads1115, BlinkaBackend
from ccsbus_hw.cp import classify
from ccsbus_hw.settings import BlinkaPins


class Direction:
    INPUT = "in"
    OUTPUT = "out"


@dataclass
class FakePin:
    name: str
    level: bool = False  # what an input reads


@dataclass
class FakeIO:
    pin: FakePin
    direction: str | None = None
    _value: bool = False
    deinited: bool = False

    @property
    def value(self) -> bool:
        return self.pin.level if self.direction == Direction.INPUT else self._value

    @value.setter
    def value(self, v: bool) -> None:
        assert self.direction == Direction.OUTPUT, "value written to an input"
        self._value = v

    def deinit(self) -> None:
        self.deinited = True


@dataclass
class FakePWM:
    pin: FakePin
    frequency: int
    duty_cycle: int

    def deinit(self) -> None:
        pass


@dataclass
class FakeAds:
    """ADS1115 register model: a config write starts a conversion of the selected channel."""

    volts: dict[int, float]
    writes: list[bytes] = field(default_factory=list)
    pointer: int = 0
    channel: int = 0

    def try_lock(self) -> bool:
        return True

    def unlock(self) -> None:
        pass

    def writeto(self, address: int, buffer: bytes) -> None:
        assert address == 0x48
        self.writes.append(bytes(buffer))
        self.pointer = buffer[0]
        if buffer[0] == 0x01:
            word = (buffer[1] << 8) | buffer[2]
            self.channel = ((word >> 12) & 0x7) - 4

    def readfrom_into(self, address: int, buf: bytearray) -> None:
        assert self.pointer == 0x00
        raw = round(self.volts[self.channel] / 4.096 * 32768)
        buf[:] = raw.to_bytes(2, "big", signed=True)


def fakes(names: list[str]) -> tuple[Any, Any, Any, dict[str, list[FakeIO]]]:
    made: dict[str, list[FakeIO]] = {}

    def make_io(pin: FakePin) -> FakeIO:
        io = FakeIO(pin)
        made.setdefault(pin.name, []).append(io)
        return io

    board = types.SimpleNamespace(**{n: FakePin(n) for n in names})
    dio = types.SimpleNamespace(DigitalInOut=make_io, Direction=Direction)
    pwmio = types.SimpleNamespace(PWMOut=lambda pin, frequency, duty_cycle:
                                  FakePWM(pin, frequency, duty_cycle))
    return board, dio, pwmio, made


PINS = BlinkaPins(cp_switch="P9_41", contactor="P9_17", contactor2="P9_14", lock="P9_16",
                  contactor_feedback="P9_30", lock_feedback="P9_28", pwm="P9_22",
                  stop_button="P9_12", active_low=["contactor", "contactor_feedback"],
                  adc_channel=1, adc_scale=100.0, cp_adc_channel=2, cp_adc_scale=4.0)
NAMES = ["P9_41", "P9_17", "P9_14", "P9_16", "P9_30", "P9_28", "P9_22", "P9_12"]


def test_outputs_follow_config_pins_and_polarity() -> None:
    board, dio, pwmio, made = fakes(NAMES)
    hw = BlinkaBackend(PINS, board=board, digitalio=dio, pwmio=pwmio, use_adc=False)
    contactor = made["P9_17"][0]
    assert contactor.value is True  # active low: inactive (open) is the high level
    assert made["P9_14"][0].value is False
    hw.set_contactors(True)
    assert contactor.value is False and made["P9_14"][0].value is True
    hw.set_cp_state("C")
    assert made["P9_41"][0].value is True
    hw.set_cp_state("B")
    assert made["P9_41"][0].value is False
    hw.set_lock(True)
    assert made["P9_16"][0].value is True
    # inputs: the contactor feedback is active low, the lock feedback is not
    board.P9_30.level = False
    board.P9_28.level = True
    board.P9_12.level = True
    assert hw.read_contactor_feedback() is True
    assert hw.read_lock_feedback() is True
    assert hw.read_stop_button() is True
    hw.set_pwm(5.0)
    assert hw._pwm.frequency == 1000 and hw._pwm.duty_cycle == round(0.05 * 0xFFFF)
    hw.set_pwm(100.0)
    assert hw._pwm.duty_cycle == 0xFFFF
    hw.close()
    assert all(io.deinited for ios in made.values() for io in ios)


def test_unset_pins_are_absent_and_unknown_pins_are_named() -> None:
    board, dio, pwmio, _ = fakes(["D17"])
    pins = BlinkaPins(cp_switch="D17", contactor="", lock="", pwm="")
    hw = BlinkaBackend(pins, board=board, digitalio=dio, pwmio=pwmio, use_adc=False)
    hw.set_contactors(True)  # no pin: nothing to drive, no error
    assert hw.read_contactor_feedback() is None and hw.read_inlet_voltage() is None
    with pytest.raises(ValueError, match=r"hw.pins.contactor: the board has no pin 'D99'"):
        BlinkaBackend(BlinkaPins(contactor="D99", cp_switch="", lock="", pwm=""),
                      board=board, digitalio=dio, use_adc=False)


def test_ads1115_bytes_and_scaling() -> None:
    board, dio, pwmio, _ = fakes(NAMES)
    ads = FakeAds({1: 3.9, 2: 2.25})
    hw = BlinkaBackend(PINS, board=board, digitalio=dio, pwmio=pwmio, i2c=ads)
    assert hw.read_inlet_voltage() == pytest.approx(390.0, abs=0.05)
    # config register: OS start, AIN1 single-ended, +-4.096 V, single shot, 860 SPS, no comparator
    assert ads.writes[0] == bytes([0x01, 0xD3, 0xE3])
    assert ads.writes[1] == bytes([0x00])
    cp = hw.read_cp()
    assert cp is not None and cp.state == "B" and cp.voltage == pytest.approx(9.0, abs=0.01)
    assert Ads1115.config_word(0) == 0xC3E3


@pytest.mark.parametrize(("volts", "state"), [(12.0, "A"), (9.1, "B"), (6.0, "C"), (3.0, "D"),
                                              (0.0, "E"), (-12.0, "F")])
def test_cp_levels(volts: float, state: str) -> None:
    assert classify(volts) == state


def test_real_blinka_on_the_simulated_board() -> None:
    pytest.importorskip("adafruit_blinka", reason="adafruit-blinka is not installed")
    script = textwrap.dedent("""
        import board
        from ccsbus_hw.backends.blinka import BlinkaBackend
        from ccsbus_hw.settings import BlinkaPins
        pins = BlinkaPins(cp_switch="Dx_OUTPUT", contactor="", lock="", pwm="Dx_OUTPUT",
                          contactor_feedback="Dx_INPUT_TRUE", lock_feedback="Dx_INPUT_FALSE",
                          active_low=["lock_feedback"])
        hw = BlinkaBackend(pins, use_adc=False)
        written = hw._outputs["cp_switch"]._pin  # the simulated pin keeps the last write
        hw.set_cp_state("C")
        assert written.current_value == 1, written.current_value
        hw.set_cp_state("B")
        assert written.current_value == 0, written.current_value
        assert hw.read_contactor_feedback() is True
        assert hw.read_lock_feedback() is True
        hw.set_pwm(5.0)
        hw.close()
        print("ok", board.board_id)
    """)
    env = {**os.environ, "BLINKA_OS_AGNOSTIC": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ok OS_AGNOSTIC_BOARD" in proc.stdout
