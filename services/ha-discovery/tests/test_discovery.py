"""The discovery payload from the contract (no broker)."""

from __future__ import annotations

import json

from ccsbus.contract import load_contract
from ccsbus_ha.discovery import (
    UNKNOWN_IF_NEGATIVE,
    DeviceInfo,
    build_discovery,
    default_device_id,
    discovery_path,
    topics_named,
)

DEVICE = DeviceInfo("ccsbus_pyplc_evse", "ccsbus EVSE (pyPlc)", "9.9")


def contract_topics_of(full_topics: set[str], base: str) -> list[str]:
    """The contract entries the topics belong to; raises KeyError for a topic outside the contract."""
    contract = load_contract().with_base(base)
    return [contract.find(contract.relative(t)).path for t in sorted(full_topics)]


def test_evse_device_lists_the_user_facing_topics_of_the_role() -> None:
    contract = load_contract()
    payload = build_discovery(contract, "EVSE", DEVICE, ["slac", "v2g", "exi", "hw"])
    json.dumps(payload)  # serialisable as is
    assert payload["dev"]["ids"] == ["ccsbus_pyplc_evse"] and payload["o"]["name"] == "ccsbus"
    cmps = payload["cmps"]
    expected = {t.path for t in contract.user_facing() if "EVSE" in t.roles and t.ha}
    assert expected <= set(cmps)
    assert "battery_voltage" not in cmps and "cpstate" not in cmps  # PEV-only topics
    assert {f"{s}_status" for s in ("slac", "v2g", "exi", "hw", "ha")} <= set(cmps)
    # every topic HA is pointed at is a topic of the contract
    assert contract_topics_of(topics_named(payload), "pyPlc")


def test_device_classes_units_and_unknown_soc() -> None:
    cmps = build_discovery(load_contract(), "EVSE", DEVICE, ["v2g"])["cmps"]
    soc = cmps["soc"]
    assert (soc["device_class"], soc["unit_of_measurement"], soc["state_class"]) == ("battery", "%",
                                                                                     "measurement")
    assert soc["value_template"] == UNKNOWN_IF_NEGATIVE
    assert cmps["battery_capacity"]["value_template"] == UNKNOWN_IF_NEGATIVE
    assert "value_template" not in cmps["charger_current"]  # negative current is a real value
    assert (cmps["target_voltage"]["device_class"], cmps["target_voltage"]["unit_of_measurement"]) == (
        "voltage", "V")
    assert cmps["charger_current"]["unit_of_measurement"] == "A"
    assert cmps["soc"]["default_entity_id"] == "sensor.ccsbus_pyplc_evse_soc"
    assert "object_id" not in cmps["soc"]
    status = cmps["v2g_status"]
    assert status["device_class"] == "connectivity" and status["payload_on"] == "online"
    assert status["state_topic"] == "pyPlc/v2g/status"


def test_enabled_switch_commands_its_own_topic() -> None:
    switch = build_discovery(load_contract(), "EVSE", DEVICE, [])["cmps"]["enabled"]
    assert switch["platform"] == "switch"
    assert switch["command_topic"] == switch["state_topic"] == "pyPlc/enabled"
    assert (switch["payload_on"], switch["payload_off"]) == ("1", "0")
    assert switch["retain"] is True


def test_availability_follows_the_publishers() -> None:
    contract = load_contract().with_base("garage/ccs")
    cmps = build_discovery(contract, "PEV", DeviceInfo("d", "d", "1"), ["v2g", "hw"])["cmps"]
    assert [a["topic"] for a in cmps["fsm_state"]["availability"]] == ["garage/ccs/v2g/status"]
    fed = cmps["battery_voltage"]  # hw, the CAN bridge or the user
    assert [a["topic"] for a in fed["availability"]] == ["garage/ccs/can/status", "garage/ccs/hw/status"]
    assert fed["availability_mode"] == "any"
    assert "enabled" not in cmps  # EVSE only
    assert contract_topics_of(topics_named(build_discovery(contract, "PEV", DEVICE, ["hw"])), "garage/ccs")


def test_device_id_and_path() -> None:
    assert default_device_id("pyPlc", "EVSE") == "ccsbus_pyplc_evse"
    assert default_device_id("bench/one", "PEV") == "ccsbus_bench_one_pev"
    assert discovery_path("x1") == "homeassistant/device/x1/config"
