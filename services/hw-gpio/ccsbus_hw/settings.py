"""The `hw:` section of config/ccsbus.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ccsbus.config import setting


class Backend(Enum):
    SIM = "sim"
    BLINKA = "blinka"
    DIETER = "dieter"
    CELERON55 = "celeron55"
    MQTT = "mqtt"


@dataclass(frozen=True)
class SafetySettings:
    current_threshold: float = setting(
        1.0, min=0.0, max=100.0,
        help="contactors open only when |current| is below this (A)")
    contactor_open_timeout: float = setting(
        5.0, min=0.1, max=120.0,
        help="seconds to wait for the current to fall before opening anyway (error event)")
    unlock_voltage: float = setting(
        60.0, min=0.0, max=120.0,
        help="the lock releases only with the inlet voltage below this (V)")
    precharge_delta: float = setting(
        20.0, min=0.5, max=200.0,
        help="PEV: contactors close only when |inlet - battery| is within this (V)")
    close_wait: float = setting(
        2.0, min=0.0, max=30.0,
        help="a close request whose conditions (precharge, isolation, lock) do not hold yet waits "
             "this long for them, then it is refused (s)")
    broker_loss_timeout: float = setting(
        1.0, min=0.05, max=60.0,
        help="broker unreachable this long while contactors are closed starts the safe shutdown (s)")
    require_lock: bool = setting(
        True, help="contactors close only while the connector lock is locked")
    feedback_timeout: float = setting(
        1.0, min=0.05, max=30.0,
        help="contactor/lock feedback must follow the command within this many seconds")


@dataclass(frozen=True)
class SimSettings:
    capacity_wh: float = setting(40000.0, min=100.0, max=300000.0,
                                 help="simulated battery capacity (Wh)")
    start_soc: float = setting(30.0, min=0.0, max=100.0, help="simulated battery SoC at start (%)")
    speedup: float = setting(1.0, min=0.1, max=10000.0,
                             help="multiplies the energy the battery takes in (fast SoC for demos)")
    battery_empty_v: float = setting(300.0, min=10.0, max=1500.0, help="battery voltage at 0 % SoC")
    battery_full_v: float = setting(400.0, min=10.0, max=1500.0, help="battery voltage at 100 % SoC")
    charge_current: float = setting(100.0, min=0.0, max=1000.0,
                                    help="PEV: charge current the simulated battery asks for (A)")
    max_voltage: float = setting(500.0, min=10.0, max=1500.0, help="EVSE: supply maximum voltage (V)")
    max_current: float = setting(200.0, min=1.0, max=1000.0, help="EVSE: supply maximum current (A)")
    voltage_slew: float = setting(400.0, min=1.0, max=100000.0,
                                  help="supply voltage slew rate (V/s)")
    current_slew: float = setting(200.0, min=1.0, max=100000.0,
                                  help="supply current slew rate (A/s)")
    discharge_tau: float = setting(0.1, min=0.001, max=30.0,
                                   help="time constant of the open cable's voltage decay (s)")
    isolation_time: float = setting(1.0, min=0.0, max=60.0,
                                    help="EVSE: duration of the simulated isolation check (s)")
    cable_check_voltage: float = setting(500.0, min=0.0, max=1500.0,
                                         help="EVSE: voltage applied during the isolation check (V)")
    plugged: bool = setting(False, help="standalone sim: a car is plugged in at start (CP B)")
    car_follows_session: bool = setting(
        True, help="standalone EVSE sim: the built-in car switches to CP state C when the isolation "
        "check starts (as DC cars do before CableCheck) and back to B once the charger has opened its "
        "contactors after charging; false: only the plug command changes its CP state")


@dataclass(frozen=True)
class BlinkaPins:
    cp_switch: str = setting("D17", help="PEV: output that switches the CP state C resistor")
    contactor: str = setting("D27", help="output driving the port contactor (relay)")
    contactor2: str = setting("", help="second contactor output (empty: none)")
    contactor_feedback: str = setting("", help="input reading the contactor auxiliary contact")
    lock: str = setting("D22", help="output driving the lock motor (on = locked)")
    lock_feedback: str = setting("", help="input reading the lock position switch")
    pwm: str = setting("D18", help="EVSE: CP PWM output (1 kHz)")
    stop_button: str = setting("", help="EVSE: stop button input (empty: none)")
    active_low: list[str] = setting([], help="names of the pins above that are active low")
    adc_channel: int = setting(0, min=0, max=3, help="ADS1115 channel of the inlet-voltage divider")
    adc_address: int = setting(0x48, min=0, max=127, help="I2C address of the ADS1115")
    adc_scale: float = setting(100.0, min=0.001, max=100000.0,
                               help="volts at the inlet per volt at the ADC pin (divider ratio)")
    cp_adc_channel: int = setting(-1, min=-1, max=3,
                                  help="EVSE: ADS1115 channel measuring the CP high level (-1: none)")
    cp_adc_scale: float = setting(4.0, min=0.001, max=1000.0,
                                  help="CP volts per ADC volt (divider ratio)")


@dataclass(frozen=True)
class HwSettings:
    backend: Backend = setting(Backend.SIM, help="sim, blinka, dieter, celeron55 or mqtt")
    tick: float = setting(0.02, min=0.002, max=1.0,
                          help="control loop period (s); safety reacts within one tick")
    state_interval: float = setting(1.0, min=0.05, max=60.0,
                                    help="hw/state and measurement topics are re-sent at least this often (s)")
    serial_port: str = setting("/dev/ttyUSB0", help="serial device of the dieter/celeron55 board")
    baudrate: int = setting(19200, min=1200, max=4000000, help="serial speed")
    adc_volts_per_count: float = setting(
        0.0, min=0.0, max=100.0,
        help="dieter: inlet volts per count of the board's A0 reading; must be calibrated (> 0) "
             "because the lock releases on this measurement (the reference divider: "
             "1.08 * 6250 / 9.4 / 1024 = 0.701)")
    relay2: bool = setting(True, help="dieter: drive the board's second relay with the first")
    auto_pwm: bool = setting(
        False, help="EVSE: switch to 5 % CP PWM (digital communication) by itself when a car "
                    "connects (B/C/D) and back to no PWM in state A; off: only hw/cmd pwm sets it")
    cable_peer_base: str = setting(
        "", help="sim: base topic of the other stack (e.g. ccsbus/pev) whose hw/state and cp/state "
                 "form the simulated cable; empty: a built-in counterpart")
    safety: SafetySettings = setting(default_factory=SafetySettings,
                                     help="safety invariants and watchdog times")
    sim: SimSettings = setting(default_factory=SimSettings, help="simulated power stage and battery")
    pins: BlinkaPins = setting(default_factory=BlinkaPins, help="blinka pin names and polarity")
