"""FoccciCape board frames (EVSE side): what the stack tells the board's CAN bus every cycle.

0x678 every cycle: byte 0 info flags, byte 1 SoC (0xFF unknown), bytes 2-7 zero.
0x679 every cycle: target voltage, target current, present voltage, present current, each an unsigned
    16-bit little-endian count of whole volts / amperes.
0x67A every `MAC_EVERY` cycles: bytes 0-5 the car's MAC (EVCCID), bytes 6-7 a 16-bit LE log index.

The layout of the info byte is this project's: the board needs to know whether a session runs and
whether power flows, nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag

from .chademo import Clamp, Encoded, FrameError

INFO_ID = 0x678
VALUES_ID = 0x679
MAC_ID = 0x67A
MAC_EVERY = 30


class BoardInfo(IntFlag):
    SESSION_ACTIVE = 0x01  # the V2G state machine is in a session (not idle / stopped)
    POWER_FLOWING = 0x02  # present current above 1 A
    CHARGING_ENABLED = 0x04  # the user has not stopped the charger (`enabled` is not 0)


@dataclass(frozen=True)
class BoardValues:
    target_voltage: float
    target_current: float
    present_voltage: float
    present_current: float


def encode_info(info: BoardInfo, soc: float | None) -> Encoded:
    clamps: list[Clamp] = []
    data = bytearray(8)
    data[0] = int(info) & 0xFF
    if soc is None or soc < 0:
        data[1] = 0xFF
    else:
        data[1] = round(soc) if soc <= 100 else 100
        if soc > 100:
            clamps.append(Clamp("soc", soc, 100))
    return Encoded(bytes(data), clamps)


def encode_values(values: BoardValues) -> Encoded:
    clamps: list[Clamp] = []
    data = bytearray(8)
    for i, (name, value) in enumerate((("target_voltage", values.target_voltage),
                                       ("target_current", values.target_current),
                                       ("present_voltage", values.present_voltage),
                                       ("present_current", values.present_current))):
        rounded = round(value)
        sent = min(max(rounded, 0), 0xFFFF)
        if sent != rounded:
            clamps.append(Clamp(name, value, sent))
        data[2 * i:2 * i + 2] = sent.to_bytes(2, "little")
    return Encoded(bytes(data), clamps)


def parse_mac(text: str | None) -> bytes:
    """The EVCCID as 6 bytes; unknown or not a MAC gives zeros (the board shows "no car")."""
    if not text:
        return bytes(6)
    digits = "".join(ch for ch in text if ch not in ":-. ")
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        return bytes(6)
    return raw if len(raw) == 6 else bytes(6)


def encode_mac(evccid: str | None, log_index: int) -> Encoded:
    return Encoded(parse_mac(evccid) + (log_index & 0xFFFF).to_bytes(2, "little"))


def decode_values(data: bytes) -> BoardValues:
    if len(data) < 8:
        raise FrameError(f"0x679: {len(data)} data bytes, need 8")
    words = [int.from_bytes(data[i:i + 2], "little") for i in range(0, 8, 2)]
    return BoardValues(*map(float, words))
