"""PhysicalValue conversions against the values seen in real messages."""

from __future__ import annotations

import json

import pytest

from ccsbus.testing.fixtures import shared_dir
from ccsbus_v2g.physical import PhysicalValueError, from_float, to_float


def test_to_float() -> None:
    assert to_float({"Multiplier": -1, "Unit": "V", "Value": 4600}) == 460.0
    assert to_float({"Multiplier": -3, "Unit": "A", "Value": 1000}) == 1.0
    assert to_float({"Multiplier": 1, "Unit": "Wh", "Value": 7850}) == 78500.0
    assert to_float({"Multiplier": 0, "Value": 5}) == 5.0  # DIN allows no Unit
    with pytest.raises(PhysicalValueError):
        to_float({"Multiplier": 4, "Value": 1})
    with pytest.raises(PhysicalValueError):
        to_float({"Unit": "V"})


@pytest.mark.parametrize(
    ("x", "unit", "expected"),
    [
        (460.0, "V", (-1, 4600)),
        (1.0, "A", (-3, 1000)),
        (32.767, "A", (-3, 32767)),
        (32.768, "A", (-2, 3277)),
        (150000.0, "W", (1, 15000)),
        (-12.5, "A", (-3, -12500)),
        (0.0, "V", (-3, 0)),
    ],
)
def test_from_float_picks_finest_multiplier(x: float, unit: str, expected: tuple[int, int]) -> None:
    pv = from_float(x, unit, "iso2")
    assert (pv["Multiplier"], pv["Value"]) == expected and pv["Unit"] == unit
    assert to_float(pv) == pytest.approx(x, rel=1e-3, abs=1e-3)


def test_units_differ_between_schemas() -> None:
    assert from_float(10, "Ah", "din")["Unit"] == "Ah"
    with pytest.raises(PhysicalValueError):
        from_float(10, "Ah", "iso2")
    with pytest.raises(PhysicalValueError):
        from_float(10, "V", "iso20")
    with pytest.raises(PhysicalValueError):
        from_float(1e9, "W", "din")
    with pytest.raises(PhysicalValueError):
        from_float(float("nan"), "W", "din")


def test_every_physical_value_in_the_vectors_roundtrips() -> None:
    vectors = shared_dir("vectors")
    seen = 0

    def walk(node: object, schema: str) -> None:
        nonlocal seen
        if isinstance(node, dict):
            if set(node) >= {"Multiplier", "Value"} and "Unit" in node:
                back = from_float(to_float(node), node["Unit"], schema)
                assert to_float(back) == pytest.approx(to_float(node))
                seen += 1
            for child in node.values():
                walk(child, schema)
        elif isinstance(node, list):
            for child in node:
                walk(child, schema)

    for schema in ("din", "iso2"):
        for line in (vectors / f"{schema}.jsonl").read_text().splitlines():
            walk(json.loads(line)["tree"], schema)
    assert seen > 50
