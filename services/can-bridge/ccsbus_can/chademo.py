"""CHAdeMO frame codec: the vehicle's 0x100/0x101/0x102 and the charger's 0x108/0x109.

Pure functions over bytes, no bus I/O. Multi-byte values are little-endian. Encoding never fails:
a value that does not fit its field is clamped and the clamp is returned so the caller can report it
(a silent wrap-around of, say, 300 A to 44 A would be dangerous).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntFlag

VEHICLE_LIMITS_ID = 0x100
VEHICLE_TIMES_ID = 0x101
VEHICLE_REQUEST_ID = 0x102
CHARGER_LIMITS_ID = 0x108
CHARGER_STATUS_ID = 0x109

VEHICLE_IDS = (VEHICLE_LIMITS_ID, VEHICLE_TIMES_ID, VEHICLE_REQUEST_ID)

# 0x101 bytes 5-6 count the rated battery capacity in 0.1 kWh steps
CAPACITY_WH_PER_BIT = 100


class FrameError(ValueError):
    """A received frame is too short or otherwise unusable; the message names the frame."""


class VehicleFault(IntFlag):
    """0x102 byte 4: the vehicle's fault flags."""

    BATTERY_OVERVOLTAGE = 0x01
    BATTERY_UNDERVOLTAGE = 0x02
    BATTERY_CURRENT_DEVIATION = 0x04
    HIGH_BATTERY_TEMPERATURE = 0x08
    BATTERY_VOLTAGE_DEVIATION = 0x10


class VehicleStatus(IntFlag):
    """0x102 byte 5: the vehicle's status flags."""

    CHARGING_ENABLED = 0x01
    NOT_IN_PARK = 0x02
    CHARGING_SYSTEM_FAULT = 0x04
    CONTACTOR_OPEN = 0x08
    STOP_BEFORE_CHARGING = 0x10


class ChargerStatus(IntFlag):
    """0x109 byte 5: the charger's status flags."""

    ENERGIZING = 0x01
    MALFUNCTION = 0x02
    CONNECTOR_LOCKED = 0x04
    BATTERY_INCOMPATIBLE = 0x08
    SYSTEM_MALFUNCTION = 0x10
    STOP_CONTROL = 0x20


def flag_names(flags: IntFlag) -> list[str]:
    """Names of the set flags; bits the standard's table does not name show as `bit<n>`."""
    names = [str(member.name).lower() for member in type(flags) if member in flags]
    known = 0
    for member in type(flags):
        known |= int(member)
    names += [f"bit{n}" for n in range(8) if int(flags) & ~known & (1 << n)]
    return names


@dataclass(frozen=True)
class VehicleLimits:
    """0x100."""

    max_battery_voltage: int  # V
    charged_rate_reference: int  # % that 0x102 byte 6 counts up to (usually 100)


@dataclass(frozen=True)
class VehicleTimes:
    """0x101."""

    max_charging_time_s: int | None  # None: not given
    estimated_charging_time_min: int
    battery_capacity_wh: int | None  # None: 0 (not given)


@dataclass(frozen=True)
class VehicleRequest:
    """0x102."""

    protocol: int
    target_voltage: int  # V
    current_request: int  # A
    faults: VehicleFault
    status: VehicleStatus
    charged_rate: int  # % of charged_rate_reference


@dataclass(frozen=True)
class Clamp:
    """A value that did not fit its field: what was asked and what went on the wire."""

    field: str
    value: float
    sent: int


@dataclass(frozen=True)
class ChargerLimits:
    """0x108."""

    welding_detection: bool
    available_voltage: float
    available_current: float
    threshold_voltage: float


@dataclass(frozen=True)
class ChargerState:
    """0x109."""

    protocol: int
    present_voltage: float
    present_current: float
    status: ChargerStatus
    remaining_time_s: float | None  # None: unknown


@dataclass
class Encoded:
    data: bytes
    clamps: list[Clamp] = field(default_factory=list)


def _need(data: bytes, length: int, name: str) -> None:
    if len(data) < length:
        raise FrameError(f"{name}: {len(data)} data bytes, need {length}")


def decode_vehicle_limits(data: bytes) -> VehicleLimits:
    _need(data, 7, "0x100")
    return VehicleLimits(max_battery_voltage=int.from_bytes(data[0:2], "little"),
                         charged_rate_reference=data[6])


def decode_vehicle_times(data: bytes) -> VehicleTimes:
    _need(data, 7, "0x101")
    # byte 0 counts in 10 s steps; 0xFF there means "look at byte 1" (minutes)
    if data[0] != 0xFF:
        max_time: int | None = data[0] * 10
    elif data[1] != 0xFF:
        max_time = data[1] * 60
    else:
        max_time = None
    capacity = int.from_bytes(data[5:7], "little") * CAPACITY_WH_PER_BIT
    return VehicleTimes(max_charging_time_s=max_time, estimated_charging_time_min=data[2],
                        battery_capacity_wh=capacity or None)


def decode_vehicle_request(data: bytes) -> VehicleRequest:
    _need(data, 7, "0x102")
    return VehicleRequest(
        protocol=data[0],
        target_voltage=int.from_bytes(data[1:3], "little"),
        current_request=data[3],
        faults=VehicleFault(data[4]),
        status=VehicleStatus(data[5]),
        charged_rate=data[6],
    )


def _fit(name: str, value: float, top: int, clamps: list[Clamp]) -> int:
    rounded = round(value)
    sent = min(max(rounded, 0), top)
    if sent != rounded:
        clamps.append(Clamp(field=name, value=value, sent=sent))
    return sent


def encode_charger_limits(limits: ChargerLimits) -> Encoded:
    clamps: list[Clamp] = []
    data = bytearray(8)
    data[0] = 1 if limits.welding_detection else 0
    data[1:3] = _fit("available_voltage", limits.available_voltage, 0xFFFF, clamps).to_bytes(2, "little")
    data[3] = _fit("available_current", limits.available_current, 0xFF, clamps)
    data[4:6] = _fit("threshold_voltage", limits.threshold_voltage, 0xFFFF, clamps).to_bytes(2, "little")
    return Encoded(bytes(data), clamps)


def encode_charger_state(state: ChargerState) -> Encoded:
    clamps: list[Clamp] = []
    data = bytearray(8)
    data[0] = _fit("protocol", state.protocol, 0xFF, clamps)
    data[1:3] = _fit("present_voltage", state.present_voltage, 0xFFFF, clamps).to_bytes(2, "little")
    data[3] = _fit("present_current", state.present_current, 0xFF, clamps)
    data[5] = int(state.status) & 0xFF
    if state.remaining_time_s is None:
        data[6], data[7] = 0xFF, 0xFF
    else:
        # byte 6 in 10 s steps while it fits, else 0xFF and byte 7 in minutes
        tens = round(state.remaining_time_s / 10)
        if tens < 0xFF:
            data[6], data[7] = max(tens, 0), 0xFF
        else:
            data[6] = 0xFF
            data[7] = _fit("remaining_time_min", state.remaining_time_s / 60, 0xFE, clamps)
    return Encoded(bytes(data), clamps)


# The vehicle-side encoders exist for simulated cars in tests and benches.
def encode_vehicle_limits(limits: VehicleLimits) -> bytes:
    data = bytearray(8)
    data[0:2] = min(max(limits.max_battery_voltage, 0), 0xFFFF).to_bytes(2, "little")
    data[6] = min(max(limits.charged_rate_reference, 0), 0xFF)
    return bytes(data)


def encode_vehicle_times(times: VehicleTimes) -> bytes:
    data = bytearray(8)
    if times.max_charging_time_s is None:
        data[0], data[1] = 0xFF, 0xFF
    elif times.max_charging_time_s < 0xFF * 10:
        data[0], data[1] = times.max_charging_time_s // 10, 0xFF
    else:
        data[0], data[1] = 0xFF, min(times.max_charging_time_s // 60, 0xFE)
    data[2] = min(max(times.estimated_charging_time_min, 0), 0xFF)
    capacity = (times.battery_capacity_wh or 0) // CAPACITY_WH_PER_BIT
    data[5:7] = min(capacity, 0xFFFF).to_bytes(2, "little")
    return bytes(data)


def encode_vehicle_request(request: VehicleRequest) -> bytes:
    data = bytearray(8)
    data[0] = request.protocol & 0xFF
    data[1:3] = min(max(request.target_voltage, 0), 0xFFFF).to_bytes(2, "little")
    data[3] = min(max(request.current_request, 0), 0xFF)
    data[4] = int(request.faults) & 0xFF
    data[5] = int(request.status) & 0xFF
    data[6] = min(max(request.charged_rate, 0), 0xFF)
    return bytes(data)


def decode_charger_limits(data: bytes) -> ChargerLimits:
    _need(data, 6, "0x108")
    return ChargerLimits(welding_detection=bool(data[0]),
                         available_voltage=int.from_bytes(data[1:3], "little"),
                         available_current=data[3],
                         threshold_voltage=int.from_bytes(data[4:6], "little"))


def decode_charger_state(data: bytes) -> ChargerState:
    _need(data, 8, "0x109")
    if data[6] != 0xFF:
        remaining: float | None = data[6] * 10
    elif data[7] != 0xFF:
        remaining = data[7] * 60
    else:
        remaining = None
    return ChargerState(protocol=data[0], present_voltage=int.from_bytes(data[1:3], "little"),
                        present_current=data[3], status=ChargerStatus(data[5]),
                        remaining_time_s=remaining)
