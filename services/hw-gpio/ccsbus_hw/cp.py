"""Control pilot levels (IEC 61851-1): the high level of the CP signal names the state."""

from __future__ import annotations

# lower bounds of the high level in volts: A 12 V, B 9 V, C 6 V, D 3 V, E 0 V, F -12 V
_BOUNDS = ((10.5, "A"), (7.5, "B"), (4.5, "C"), (1.5, "D"), (-1.5, "E"))


def classify(volts: float) -> str:
    for bound, state in _BOUNDS:
        if volts >= bound:
            return state
    return "F"
