"""Absolute topics (outside the base topic): contract lookup and the bus on a real broker."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ccsbus.bus import Bus, PublishRefused
from ccsbus.config import BrokerConfig
from ccsbus.contract import load_contract

DISCOVERY = "homeassistant/device/ccsbus_test/config"


def test_absolute_paths_stay_outside_the_base() -> None:
    contract = load_contract().with_base("bench/one")
    assert contract.full_topic(DISCOVERY) == DISCOVERY
    assert contract.full_topic("homeassistant/status") == "homeassistant/status"
    assert contract.full_topic("fsm_state") == "bench/one/fsm_state"
    # the exact entry wins over the `{service}/status` pattern it also matches
    assert contract.find("homeassistant/status").absolute
    assert not contract.find("v2g/status").absolute
    assert contract.may_publish("ha", DISCOVERY, "EVSE")
    assert not contract.may_publish("v2g", DISCOVERY, "EVSE")
    assert not contract.may_publish("ha", "homeassistant/status", "EVSE")


def test_bus_publishes_subscribes_and_clears_absolute_topics(
    mosquitto: Any, probe_factory: Any
) -> None:
    probe = probe_factory(mosquitto.port)
    probe.subscribe("homeassistant/#")
    received: list[tuple[str, Any]] = []

    async def scenario() -> None:
        bus = Bus("ha", BrokerConfig(url=mosquitto.url, base_topic="bench/abs"), "EVSE")
        got = asyncio.Event()

        def on_status(path: str, value: Any) -> None:
            received.append((path, value))
            got.set()

        bus.subscribe("homeassistant/status", on_status)
        await bus.start()
        bus.publish(DISCOVERY, {"dev": {"ids": ["x"]}, "o": {"name": "t"}, "cmps": {}})
        with pytest.raises(PublishRefused):
            bus.publish("homeassistant/status", "online")
        with pytest.raises(PublishRefused):
            bus.clear("v2g/error")  # not retained
        await asyncio.to_thread(probe.wait_payload, DISCOVERY, None, 5.0)
        probe.publish("homeassistant/status", "online")
        await asyncio.wait_for(got.wait(), 5)
        bus.clear(DISCOVERY)
        await asyncio.to_thread(probe.wait_payload, DISCOVERY, b"", 5.0)
        await bus.close()

    asyncio.run(scenario())
    assert received == [("homeassistant/status", "online")]
    first = next(p for t, p, _ in probe.seen if t == DISCOVERY)
    assert json.loads(first)["dev"]["ids"] == ["x"]
    # the clear really removed the retained message: a new subscriber gets nothing
    late = probe_factory(mosquitto.port)
    late.subscribe(DISCOVERY)
    with pytest.raises(TimeoutError):
        late.wait_payload(DISCOVERY, None, 0.7)
