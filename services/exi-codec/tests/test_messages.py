"""Every message of every schema, built from JSON, encodes and decodes back to the same tree.

tests/data/samples_<schema>.json holds two trees per message (made by the generator from the
grammars: "full" with every optional part, repeats and extreme values; "minimal" with required
content only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import ccsbus_exi

DATA = Path(__file__).resolve().parent / "data"
CASES: list[tuple[str, str, str, dict[str, Any]]] = []
for _schema in ("apphand", "din", "iso2"):
    for _msg, _variants in json.loads((DATA / f"samples_{_schema}.json").read_text()).items():
        for _variant, _tree in _variants.items():
            CASES.append((_schema, _msg, _variant, _tree))


@pytest.mark.parametrize(("schema", "message", "variant", "tree"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_message_round_trip(schema: str, message: str, variant: str, tree: dict[str, Any]) -> None:
    data = ccsbus_exi.encode(schema, tree)
    assert data[0] == 0x80
    back = ccsbus_exi.decode(schema, data)
    assert back == tree
    assert ccsbus_exi.encode(schema, back) == data
    # the C JSON path agrees with the dict path
    assert json.loads(ccsbus_exi.decode_json(schema, data)) == tree
    assert ccsbus_exi.encode_json(schema, json.dumps(tree)) == data


def test_every_message_is_covered() -> None:
    names = {(c[0], c[1]) for c in CASES}
    din = {m for s, m in names if s == "din"}
    iso2 = {m for s, m in names if s == "iso2"}
    # DIN 70121 and ISO 15118-2 define 17 request/response pairs each
    assert len(din) == 34 and len(iso2) == 34
    for body in (din, iso2):
        assert all(m[:-3] + ("Res" if m.endswith("Req") else "Req") in body for m in body)
    assert {m for s, m in names if s == "apphand"} == {"supportedAppProtocolReq",
                                                       "supportedAppProtocolRes"}


def test_hand_built_din_current_demand() -> None:
    tree: dict[str, Any] = {"V2G_Message": {
        "Header": {"SessionID": "8FA57FDE2BFAFE78"},
        "Body": {"CurrentDemandReq": {
            "DC_EVStatus": {"EVReady": True, "EVErrorCode": "NO_ERROR", "EVRESSSOC": 30},
            "EVTargetCurrent": {"Multiplier": 0, "Unit": "A", "Value": 1},
            "EVMaximumVoltageLimit": {"Multiplier": 1, "Unit": "V", "Value": 50},
            "ChargingComplete": False,
            "EVTargetVoltage": {"Multiplier": 1, "Unit": "V", "Value": 46},
        }}}}
    data = ccsbus_exi.encode("din", tree)
    assert ccsbus_exi.decode("din", data) == tree
    # same content, members in another order: same bytes
    body = tree["V2G_Message"]["Body"]["CurrentDemandReq"]
    reordered = {"V2G_Message": {"Body": {"CurrentDemandReq": dict(reversed(body.items()))},
                                 "Header": tree["V2G_Message"]["Header"]}}
    assert ccsbus_exi.encode("din", reordered) == data
