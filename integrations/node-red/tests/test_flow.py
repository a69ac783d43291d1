"""The importable Node-RED flow: structure Node-RED needs on import, and topics from the contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ccsbus.contract import EXTERNAL, load_contract

FLOW = Path(__file__).resolve().parents[1] / "ccsbus-flow.json"
BASE = "pyPlc"
CONFIG_TYPES = {"mqtt-broker"}


@pytest.fixture(scope="module")
def nodes() -> list[dict[str, Any]]:
    data = json.loads(FLOW.read_text(encoding="utf-8"))
    assert isinstance(data, list), "a flow file is a JSON array of nodes"
    return data


def test_every_node_has_a_unique_id_and_a_type(nodes: list[dict[str, Any]]) -> None:
    ids = [n["id"] for n in nodes]
    assert len(ids) == len(set(ids)), "duplicate node ids"
    assert all(isinstance(n.get("type"), str) and n["type"] for n in nodes)


def test_one_tab_holds_every_flow_node(nodes: list[dict[str, Any]]) -> None:
    tabs = [n for n in nodes if n["type"] == "tab"]
    assert len(tabs) == 1
    for node in nodes:
        if node["type"] == "tab" or node["type"] in CONFIG_TYPES:
            continue
        assert node.get("z") == tabs[0]["id"], f"{node['id']} is not on the tab"


def test_wires_and_broker_references_resolve(nodes: list[dict[str, Any]]) -> None:
    by_id = {n["id"]: n for n in nodes}
    for node in nodes:
        for output in node.get("wires", []):
            for target in output:
                assert target in by_id, f"{node['id']} wires to missing node {target}"
                assert by_id[target]["type"] not in ("tab", *CONFIG_TYPES)
        if node["type"] in ("mqtt in", "mqtt out"):
            broker = by_id.get(node.get("broker", ""))
            assert broker is not None and broker["type"] == "mqtt-broker", node["id"]


def test_required_nodes_are_there(nodes: list[dict[str, Any]]) -> None:
    subscribed = {n["topic"] for n in nodes if n["type"] == "mqtt in"}
    assert {"pyPlc/fsm_state", "pyPlc/soc", "pyPlc/v2g/session"} <= subscribed
    assert any(n["type"] == "debug" for n in nodes)
    stops = [n for n in nodes if n["type"] == "inject" and n["payload"] == "0"]
    assert stops, "an inject node sending 0"
    by_id = {n["id"]: n for n in nodes}
    targets = [by_id[t] for n in stops for out in n["wires"] for t in out]
    assert any(t["type"] == "mqtt out" and t["topic"] == "pyPlc/enabled" for t in targets)
    session = next(n for n in nodes if n["type"] == "mqtt in" and n["topic"] == "pyPlc/v2g/session")
    assert session["datatype"] == "json"  # the session is a JSON topic in the contract


def test_topics_are_contract_topics_and_outputs_are_user_inputs(nodes: list[dict[str, Any]]) -> None:
    contract = load_contract().with_base(BASE)
    for node in nodes:
        if node["type"] not in ("mqtt in", "mqtt out"):
            continue
        full = node["topic"]
        assert full.startswith(BASE + "/"), full
        topic = contract.find(contract.relative(full))  # KeyError: not in the contract
        if node["type"] == "mqtt out":
            user_inputs = [role for role, use in topic.roles.items()
                           if use.direction == "in" and EXTERNAL in use.publishers]
            assert user_inputs, f"{full} is not a topic the user may publish"
            # the payload the inject nodes send must be valid for the topic
            for source in nodes:
                if any(node["id"] in out for out in source.get("wires", [])) and source["type"] == "inject":
                    topic.payload.decode(str(source["payload"]).encode())
            if topic.retained:  # a user stop must survive a restart of the stack
                assert node["retain"] in ("true", True), f"{full} is retained in the contract"
