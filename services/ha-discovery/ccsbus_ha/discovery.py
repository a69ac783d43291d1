"""Home Assistant device discovery built from the topic contract (pure: contract in, payload out).

One retained message on `homeassistant/device/<id>/config` (HA 2024.11+) describes the whole stack:
`dev` (the device), `o` (origin) and `cmps` (one component per user-facing topic of the stack's role
that carries an `ha` hint, plus one connectivity sensor per service status topic).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ccsbus.contract import EXTERNAL, Contract, Topic

DISCOVERY_PATH = "homeassistant/device/{id}/config"
HA_STATUS_PATH = "homeassistant/status"
ONLINE, OFFLINE = "online", "offline"

# SoC and capacity use -1 for "unknown": Home Assistant shows unknown instead of a -1 % battery
UNKNOWN_IF_NEGATIVE = "{{ value if value | float(-1) >= 0 else None }}"

_ROLE_TEXT = {"EVSE": "charger (EVSE)", "PEV": "car side (PEV)", "LISTEN": "listener"}


@dataclass(frozen=True)
class DeviceInfo:
    device_id: str
    name: str
    version: str


def default_device_id(base: str, role: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "_", f"ccsbus_{base}_{role}".lower()).strip("_")


def discovery_path(device_id: str) -> str:
    return DISCOVERY_PATH.replace("{id}", device_id)


def _entity_id(platform: str, device: DeviceInfo, key: str) -> str:
    # entity ids are lower-case letters, digits and underscores
    return f"{platform}." + re.sub(r"[^a-z0-9_]+", "_", f"{device.device_id}_{key}".lower())


def _availability(contract: Contract, services: list[str]) -> list[dict[str, str]]:
    return [{"topic": contract.full_topic(f"{s}/status"), "payload_available": ONLINE,
             "payload_not_available": OFFLINE} for s in services]


def _component(contract: Contract, topic: Topic, role: str, device: DeviceInfo) -> dict[str, Any]:
    hint = topic.ha
    platform = str(hint["component"])
    key = topic.path.replace("/", "_")
    full = contract.full_topic(topic.path)
    entry: dict[str, Any] = {
        "platform": platform,
        "name": str(hint.get("name") or topic.path),
        "unique_id": f"{device.device_id}_{key}",
        "default_entity_id": _entity_id(platform, device, key),
        "state_topic": full,
        "qos": topic.qos,
    }
    if hint.get("device_class"):
        entry["device_class"] = hint["device_class"]
    if hint.get("state_class"):
        entry["state_class"] = hint["state_class"]
    if topic.unit:
        entry["unit_of_measurement"] = topic.unit
    if topic.payload.minimum == -1:
        entry["value_template"] = UNKNOWN_IF_NEGATIVE
    if platform == "switch":
        # the stack reads plain 0/1 on the same retained topic it reports
        entry.update(command_topic=full, payload_on="1", payload_off="0", state_on="1", state_off="0",
                     retain=topic.retained, optimistic=False)
    publishers = sorted(p for p in topic.publishers(role) if p != EXTERNAL)
    # a topic only the user writes (the `enabled` switch) is there as long as we are
    entry["availability"] = _availability(contract, publishers or ["ha"])
    if len(publishers) > 1:
        entry["availability_mode"] = "any"  # one of them feeds it (e.g. hw or the CAN bridge)
    return entry


def _status_component(contract: Contract, status: Topic, service: str,
                      device: DeviceInfo) -> dict[str, Any]:
    hint = status.ha
    platform = str(hint.get("component", "binary_sensor"))
    key = f"{service}_status"
    return {
        "platform": platform,
        "name": str(hint.get("name", "{service} service")).replace("{service}", service),
        "unique_id": f"{device.device_id}_{key}",
        "default_entity_id": _entity_id(platform, device, key),
        "state_topic": contract.full_topic(contract.expand(status, service)),
        "device_class": hint.get("device_class", "connectivity"),
        "payload_on": ONLINE,
        "payload_off": OFFLINE,
        "entity_category": "diagnostic",
        "qos": status.qos,
    }


def build_discovery(contract: Contract, role: str, device: DeviceInfo,
                    services: list[str]) -> dict[str, Any]:
    """The device discovery payload for a stack of `role` on `contract.base`."""
    components: dict[str, Any] = {}
    for topic in contract.user_facing():
        if role in topic.roles and topic.ha.get("component"):
            components[topic.path.replace("/", "_")] = _component(contract, topic, role, device)
    status = next(t for t in contract.topics if t.per_service and t.path == "{service}/status")
    for service in [*services, "ha"] if "ha" not in services else services:
        components[f"{service}_status"] = _status_component(contract, status, service, device)
    return {
        "dev": {"ids": [device.device_id], "name": device.name, "mf": "ccsbus",
                "mdl": f"CCS {_ROLE_TEXT.get(role, role)}", "sw": device.version},
        "o": {"name": "ccsbus", "sw": device.version},
        "cmps": components,
        "qos": 1,
    }


def topics_named(payload: dict[str, Any]) -> set[str]:
    """Every MQTT topic a discovery payload points Home Assistant at (for checks and tests)."""
    found: set[str] = set()
    for entry in payload.get("cmps", {}).values():
        for key in ("state_topic", "command_topic"):
            if key in entry:
                found.add(entry[key])
        for avty in entry.get("availability", []):
            found.add(avty["topic"])
    return found
