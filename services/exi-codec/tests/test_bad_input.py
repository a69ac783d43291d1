"""Bad input yields an ExiError with a code, a bit offset and a message; never a crash."""

from __future__ import annotations

import json
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ccsbus_exi
from ccsbus_exi import ExiError

# DIN CurrentDemandReq and ISO-2 SessionSetupReq from real sessions
DIN_CDREQ = bytes.fromhex(
    "809a0223e95ff78afebf9e10d1400780c0c00404050320000c203e804080e1807c00018103200c0814010140b800")
ISO2_SSREQ = bytes.fromhex("809802000000000000000011d0199135c0040b2000")
GOOD = {"din": DIN_CDREQ, "iso2": ISO2_SSREQ}


def _expect_error(schema: str, data: bytes) -> ExiError:
    with pytest.raises(ExiError) as info:
        ccsbus_exi.decode(schema, data)
    err = info.value
    assert err.code != 0 and err.message
    assert 0 <= err.offset <= len(data) * 8
    return err


def test_good_inputs_decode() -> None:
    assert "CurrentDemandReq" in ccsbus_exi.decode("din", DIN_CDREQ)["V2G_Message"]["Body"]
    assert "SessionSetupReq" in ccsbus_exi.decode("iso2", ISO2_SSREQ)["V2G_Message"]["Body"]


@pytest.mark.parametrize("schema", ["din", "iso2"])
def test_every_truncation_is_an_error(schema: str) -> None:
    data = GOOD[schema]
    # cutting the stream anywhere before its last value loses events (the tail is padding)
    for n in range(len(data) - 2):
        err = _expect_error(schema, data[:n])
        assert err.name in ("truncated", "event", "value", "unsupported"), err


def test_empty_and_header() -> None:
    assert _expect_error("din", b"").name == "truncated"
    err = _expect_error("din", b"\xa0\x9a\x00")  # with an EXI cookie-less options bit
    assert err.name == "header" and err.offset == 0
    assert "0xA0" in err.message


def test_unknown_schema() -> None:
    with pytest.raises(ExiError) as info:
        ccsbus_exi.decode("iso20", DIN_CDREQ)
    assert info.value.name == "schema"


def test_wrong_schema_is_caught_or_decodes_differently() -> None:
    # the stream does not say its schema: decoding DIN bytes as ISO-2 must not crash
    try:
        tree = ccsbus_exi.decode("iso2", DIN_CDREQ)
    except ExiError as err:
        assert err.code != 0
    else:
        assert tree != ccsbus_exi.decode("din", DIN_CDREQ)


def test_error_names_element_and_offset() -> None:
    # flip the root-element code to one past the declared list: SE(*) is unsupported
    err = _expect_error("din", bytes([0x80, 0xA2, 0x00]))
    assert err.name == "unsupported" and err.offset == 15


def test_random_bytes_never_crash() -> None:
    rng = random.Random(1234)
    seen = set()
    for _ in range(5000):
        schema = rng.choice(ccsbus_exi.SCHEMAS)
        data = bytes([0x80]) + os.urandom(0) + rng.randbytes(rng.randrange(0, 64))
        try:
            ccsbus_exi.decode(schema, data)
        except ExiError as err:
            seen.add(err.name)
    assert {"event", "truncated"} <= seen


def test_oversize_input_is_bounded() -> None:
    # a 1 MiB string length claim must not allocate or read past the end
    claim = bytes([0x80, 0x9A, 0x02, 0x00, 0xFF, 0xFF, 0x3F])
    _expect_error("din", claim)
    big = DIN_CDREQ + bytes(1 << 20)  # trailing padding is allowed and ignored
    assert ccsbus_exi.decode("din", big) == ccsbus_exi.decode("din", DIN_CDREQ)


def test_deep_tree_rejected_by_encoder() -> None:
    tree: dict[str, object] = {}
    node = tree
    for _ in range(200):
        node["x"] = {}
        node = node["x"]  # type: ignore[assignment]
    with pytest.raises(ExiError) as info:
        ccsbus_exi.encode("din", {"V2G_Message": tree})
    assert info.value.name in ("depth", "structure")


def test_encoder_errors_name_the_problem() -> None:
    tree = ccsbus_exi.decode("din", DIN_CDREQ)
    body = tree["V2G_Message"]["Body"]["CurrentDemandReq"]
    missing = json.loads(json.dumps(tree))
    del missing["V2G_Message"]["Body"]["CurrentDemandReq"]["DC_EVStatus"]
    with pytest.raises(ExiError) as info:
        ccsbus_exi.encode("din", missing)
    assert info.value.name == "structure" and "DC_EVStatus" in info.value.message

    extra = json.loads(json.dumps(tree))
    extra["V2G_Message"]["Body"]["CurrentDemandReq"]["Bogus"] = 1
    with pytest.raises(ExiError) as info:
        ccsbus_exi.encode("din", extra)
    assert "Bogus" in info.value.message

    bad_enum = json.loads(json.dumps(tree))
    bad_enum["V2G_Message"]["Body"]["CurrentDemandReq"]["DC_EVStatus"]["EVErrorCode"] = "NOPE"
    with pytest.raises(ExiError) as info:
        ccsbus_exi.encode("din", bad_enum)
    assert info.value.name == "value" and "NOPE" in info.value.message

    out_of_range = json.loads(json.dumps(tree))
    out_of_range["V2G_Message"]["Body"]["CurrentDemandReq"]["DC_EVStatus"]["EVRESSSOC"] = 101
    with pytest.raises(ExiError) as info:
        ccsbus_exi.encode("din", out_of_range)
    assert info.value.name == "value" and "EVRESSSOC" in info.value.message

    for bad in (1.5, None, "x", [1]):
        wrong = json.loads(json.dumps(tree))
        wrong["V2G_Message"]["Body"]["CurrentDemandReq"]["DC_EVStatus"]["EVReady"] = bad
        with pytest.raises(ExiError):
            ccsbus_exi.encode("din", wrong)
    assert body["DC_EVStatus"]["EVReady"] is True


def test_encode_json_errors() -> None:
    for text in ("", "{", '{"V2G_Message": }', "[1,2", '"\\ud800"', "{}", "[]", "1e400"):
        with pytest.raises(ExiError) as info:
            ccsbus_exi.encode_json("din", text)
        assert info.value.name in ("json", "structure")


@settings(max_examples=800, deadline=None)
@given(schema=st.sampled_from(ccsbus_exi.SCHEMAS), data=st.binary(max_size=200))
def test_hypothesis_arbitrary_bytes(schema: str, data: bytes) -> None:
    try:
        tree = ccsbus_exi.decode(schema, data)
    except ExiError as err:
        assert err.code != 0 and err.message
        return
    # whatever decodes must re-encode to something that decodes to the same tree
    assert ccsbus_exi.decode(schema, ccsbus_exi.encode(schema, tree)) == tree


@settings(max_examples=800, deadline=None)
@given(pos=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7),
       schema=st.sampled_from(["din", "iso2"]))
def test_hypothesis_bit_flips(pos: int, bit: int, schema: str) -> None:
    data = bytearray(GOOD[schema])
    data[pos % len(data)] ^= 1 << bit
    try:
        tree = ccsbus_exi.decode(schema, bytes(data))
    except ExiError as err:
        assert err.code != 0
        return
    assert ccsbus_exi.decode(schema, ccsbus_exi.encode(schema, tree)) == tree


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.floats(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids,
                                                              max_size=4),
    max_leaves=30)


@settings(max_examples=800, deadline=None)
@given(schema=st.sampled_from(ccsbus_exi.SCHEMAS), value=json_values)
def test_hypothesis_arbitrary_trees(schema: str, value: object) -> None:
    for tree in (value, {"V2G_Message": value}, {"supportedAppProtocolReq": value}):
        if not isinstance(tree, dict):
            continue
        try:
            data = ccsbus_exi.encode(schema, tree)
        except ExiError as err:
            assert err.code != 0 and err.message
            continue
        assert ccsbus_exi.encode(schema, ccsbus_exi.decode(schema, data)) == data
