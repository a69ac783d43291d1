"""Payload shapes: the JSON Schema subset of the contract, compiled to checks."""

from __future__ import annotations

import pytest

from ccsbus.shape import ShapeError, compile_shape

SESSION = {
    "type": "object",
    "required": ["role", "state"],
    "properties": {
        "role": {"enum": ["EVSE", "PEV"]},
        "state": {"type": "string", "maxLength": 8},
        "soc": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
        "mac": {"type": "string", "pattern": "^([0-9A-F]{2}:){5}[0-9A-F]{2}$"},
        "values": {"type": "array", "items": {"type": "integer"}, "maxItems": 3},
        "flag": {"type": "boolean"},
    },
}


@pytest.fixture(scope="module")
def check():
    return compile_shape(SESSION)


def test_valid_values_pass(check):
    assert check({"role": "EVSE", "state": "Idle", "soc": None, "mac": "00:B0:52:00:00:01",
                  "values": [1, 2], "flag": True, "other": {"x": 1}}, "payload") is None
    assert check({"role": "PEV", "state": "", "soc": 55.5}, "payload") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "payload: [] is not of type object"),
        ({"state": "x"}, "payload: 'role' is a required property"),
        ({"role": "CAR", "state": "x"}, "payload/role: 'CAR' is not one of ['EVSE', 'PEV']"),
        ({"role": "PEV", "state": "too long text"}, "payload/state: longer than 8 characters"),
        ({"role": "PEV", "state": "x", "soc": 101}, "payload/soc: 101 is greater than the maximum of 100"),
        ({"role": "PEV", "state": "x", "soc": "50"}, "payload/soc: '50' is not of type number or null"),
        ({"role": "PEV", "state": "x", "mac": "00:b0:52:00:00:01"}, "payload/mac: '00:b0:52:00:00:01' does not"),
        ({"role": "PEV", "state": "x", "values": [1, "2"]}, "payload/values[1]: '2' is not of type integer"),
        ({"role": "PEV", "state": "x", "values": [1, 2, 3, 4]}, "payload/values: more than 3 items"),
        ({"role": "PEV", "state": "x", "flag": 1}, "payload/flag: 1 is not of type boolean"),
        ({"role": "PEV", "state": "x", "values": [True]}, "payload/values[0]: True is not of type integer"),
    ],
)
def test_each_violation_is_named_with_its_place(check, value, message):
    error = check(value, "payload")
    assert error is not None and error.startswith(message)


def test_enum_does_not_confuse_true_with_one():
    assert compile_shape({"enum": [1]})(True, "v") is not None


@pytest.mark.parametrize(
    "schema",
    [{"oneOf": []}, {"type": "decimal"}, {"properties": {"a": {"format": "date"}}}, {"additionalProperties": {}}],
)
def test_unsupported_shapes_are_refused(schema):
    with pytest.raises(ShapeError):
        compile_shape(schema)
