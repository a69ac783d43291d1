"""PhysicalValueType (Multiplier, Unit, Value) of DIN 70121 and ISO 15118-2 as Python floats.

Both schemas carry Value as xs:short and Multiplier as -3..3. They differ in the unit: DIN lists
h m s A Ah V VA W W/s Wh and makes Unit optional; ISO-2 lists h m s A V W Wh and requires it.
"""

from __future__ import annotations

import math
from typing import Any

MULTIPLIER_MIN = -3
MULTIPLIER_MAX = 3
SHORT_MIN = -32768
SHORT_MAX = 32767

UNITS: dict[str, frozenset[str]] = {
    "din": frozenset({"h", "m", "s", "A", "Ah", "V", "VA", "W", "W/s", "Wh"}),
    "iso2": frozenset({"h", "m", "s", "A", "V", "W", "Wh"}),
}


class PhysicalValueError(ValueError):
    """A value that does not fit the schema's PhysicalValueType."""


def to_float(pv: dict[str, Any]) -> float:
    """Value · 10^Multiplier of a decoded PhysicalValueType."""
    try:
        value = int(pv["Value"])
        multiplier = int(pv["Multiplier"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PhysicalValueError(f"not a PhysicalValue: {pv!r}") from exc
    if not MULTIPLIER_MIN <= multiplier <= MULTIPLIER_MAX:
        raise PhysicalValueError(
            f"Multiplier {multiplier} outside {MULTIPLIER_MIN}..{MULTIPLIER_MAX}"
        )
    # round away binary noise: 4600 * 10**-1 must read 460.0, not 459.99999999999994
    return round(value * 10.0**multiplier, max(0, -multiplier))


def from_float(x: float, unit: str, schema: str) -> dict[str, Any]:
    """The PhysicalValue with the finest multiplier whose Value still fits a short."""
    units = UNITS.get(schema)
    if units is None:
        raise PhysicalValueError(f"unknown schema {schema!r}; known: {', '.join(sorted(UNITS))}")
    if unit not in units:
        raise PhysicalValueError(f"unit {unit!r} is not in the {schema} unitSymbolType")
    if not math.isfinite(x):
        raise PhysicalValueError(f"{x!r} is not a finite number")
    for multiplier in range(MULTIPLIER_MIN, MULTIPLIER_MAX + 1):
        value = round(x / 10.0**multiplier)
        if SHORT_MIN <= value <= SHORT_MAX:
            return {"Multiplier": multiplier, "Unit": unit, "Value": int(value)}
    raise PhysicalValueError(f"{x} {unit} exceeds the PhysicalValue range (±3.2767e7)")
