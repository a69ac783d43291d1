"""The topic contract: the pyPLC-compatible table, publish refusal, payload validation."""

from __future__ import annotations

import json

import pytest

from ccsbus.contract import ContractError, PayloadError, PayloadType, load_contract, parse_contract
from ccsbus.render import to_acl, to_json, to_markdown

PYPLC_TOPICS = {
    # name: (payload type, PEV direction, EVSE direction) from pyPLC's MQTT interface
    "battery_voltage": (PayloadType.NUMBER, "in", None),
    "target_voltage": (PayloadType.NUMBER, "in", "out"),
    "target_current": (PayloadType.NUMBER, "in", "out"),
    "soc": (PayloadType.NUMBER, "in", "out"),
    "inlet_voltage": (PayloadType.NUMBER, "in", None),
    "enabled": (PayloadType.NUMBER, None, "in"),
    "fsm_state": (PayloadType.TEXT, "out", "out"),
    "cpstate": (PayloadType.WORD, "out", None),
    "relay_request": (PayloadType.WORD, "out", None),
    "lock_request": (PayloadType.WORD, "out", None),
    "charger_max_voltage": (PayloadType.NUMBER, "out", "in"),
    "charger_max_current": (PayloadType.NUMBER, "out", "in"),
    "charger_voltage": (PayloadType.NUMBER, "out", "in"),
    "charger_current": (PayloadType.NUMBER, "out", "in"),
    "battery_capacity": (PayloadType.NUMBER, "in", "out"),
    "evccid": (PayloadType.TEXT, None, "out"),
}


@pytest.fixture(scope="module")
def contract():
    return load_contract()


@pytest.mark.parametrize("name", sorted(PYPLC_TOPICS))
def test_every_pyplc_topic_is_plain_text_with_its_directions(contract, name):
    kind, pev, evse = PYPLC_TOPICS[name]
    topic = contract.find(name)
    assert topic.user_facing
    assert topic.payload.type is kind
    assert contract.full_topic(name) == f"pyPlc/{name}"
    assert (topic.roles["PEV"].direction if "PEV" in topic.roles else None) == pev
    assert (topic.roles["EVSE"].direction if "EVSE" in topic.roles else None) == evse


def test_plain_text_payloads_round_trip_like_pyplc(contract):
    assert contract.find("target_voltage").payload.encode(400) == b"400"
    assert contract.find("target_voltage").payload.encode(399.5) == b"399.5"
    assert contract.find("soc").payload.decode(b"77") == 77
    assert contract.find("cpstate").payload.decode(b"C") == "C"
    assert contract.find("relay_request").payload.encode("on") == b"on"


@pytest.mark.parametrize(
    ("name", "raw", "reason"),
    [
        ("soc", b"101", "above the maximum"),
        ("soc", b"abc", "not a decimal number"),
        ("enabled", b"nan", "not a finite number"),
        ("cpstate", b"X", "not one of"),
        ("slac/cmd", b"{not json", "invalid JSON"),
        ("slac/cmd", b'{"cmd": "explode"}', "cmd"),
        ("v2g/cmd", b"\xff\xfe", "not UTF-8"),
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(contract, name, raw, reason):
    with pytest.raises(PayloadError, match=reason):
        contract.find(name).payload.decode(raw)


def test_publish_rights_follow_the_roles(contract):
    assert contract.may_publish("v2g", "target_voltage", "EVSE")
    assert not contract.may_publish("v2g", "target_voltage", "PEV")
    assert contract.may_publish("hw", "target_voltage", "PEV")
    assert not contract.may_publish("slac", "fsm_state", "EVSE")
    assert contract.may_publish("slac", "slac/status", "EVSE")
    assert not contract.may_publish("slac", "v2g/status", "EVSE")
    assert contract.may_publish("exi", "exi/reply/v2g-123", "EVSE")
    assert not contract.may_publish("v2g", "no/such/topic", "EVSE")


def test_every_service_has_status_and_error(contract):
    for service in contract.services:
        assert contract.find(f"{service}/status").payload.enum == ("online", "offline")
        assert contract.find(f"{service}/error").payload.type is PayloadType.JSON


def test_markdown_lists_every_topic(contract):
    text = to_markdown(contract)
    for topic in contract.topics:
        assert f"`{topic.path if topic.absolute else 'pyPlc/' + topic.path}`" in text


def test_acl_gives_each_service_only_its_topics(contract):
    acl = to_acl(contract)
    blocks = {b.splitlines()[0].split()[1]: b for b in acl.split("\n\n") if b.startswith("user ")}
    assert "topic write pyPlc/slac/state" in blocks["slac"]
    assert "topic write pyPlc/slac/state" not in blocks["v2g"]
    assert "topic write pyPlc/v2g/status" in blocks["v2g"]
    assert "topic write pyPlc/exi/reply/+" in blocks["exi"]
    assert "topic write pyPlc/enabled" in blocks["external"]


def test_json_export_is_complete(contract):
    data = to_json(contract)
    assert json.loads(json.dumps(data))["base"] == "pyPlc"
    assert {t["path"] for t in data["topics"]} == {t.path for t in contract.topics}


def test_contract_errors_name_the_topic():
    with pytest.raises(ContractError, match="x: roles.PEV.pub names unknown service 'ghost'"):
        parse_contract({"services": {"a": ""}, "topics": [
            {"path": "x", "payload": {"type": "number"}, "roles": {"PEV": {"dir": "in", "pub": ["ghost"]}}}]})
    with pytest.raises(ContractError, match="y: a word payload needs an enum"):
        parse_contract({"services": {"a": ""}, "topics": [{"path": "y", "payload": {"type": "word"}}]})
