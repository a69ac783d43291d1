"""The bus against real brokers (mosquitto and the embedded one): refusal, validation, availability."""

from __future__ import annotations

import asyncio
import json

import pytest

from ccsbus.bus import Bus, PublishRefused
from ccsbus.config import BrokerConfig


def _bus(service: str, url: str, role: str = "EVSE") -> Bus:
    return Bus(service, BrokerConfig(url=url, reconnect_min=1, reconnect_max=2), role)


def test_status_online_retained_and_offline_on_close(any_broker, probe_factory):
    async def main() -> None:
        bus = _bus("slac", any_broker.url)
        await bus.start()
        probe = probe_factory(any_broker.port)
        probe.subscribe("pyPlc/slac/status")
        assert probe.wait_payload("pyPlc/slac/status", b"online") == b"online"
        await bus.close()
        assert probe.wait_payload("pyPlc/slac/status", b"offline") == b"offline"

    asyncio.run(main())


def test_publish_outside_the_contract_is_refused(any_broker):
    async def main() -> None:
        bus = _bus("v2g", any_broker.url)
        await bus.start()
        with pytest.raises(PublishRefused, match="may not publish 'no/such'"):
            bus.publish("no/such", 1)
        with pytest.raises(PublishRefused, match="may not publish 'enabled'"):
            bus.publish("enabled", 0)  # an input of the EVSE stack, not v2g's to publish
        with pytest.raises(PublishRefused, match="above the maximum"):
            bus.publish("soc", 150)
        with pytest.raises(PublishRefused, match="may not publish 'cpstate'"):
            bus.publish("cpstate", "C")  # a PEV topic, and this stack is an EVSE
        await bus.close()

    asyncio.run(main())


def test_bad_input_goes_to_the_error_topic_and_the_service_carries_on(any_broker, probe_factory):
    async def main() -> None:
        bus = _bus("v2g", any_broker.url)
        got: list[object] = []
        bus.subscribe("enabled", lambda _p, v: got.append(v))
        bus.subscribe("v2g/cmd", lambda _p, v: got.append(v))
        await bus.start()
        probe = probe_factory(any_broker.port)
        probe.subscribe("pyPlc/v2g/error")
        probe.publish("pyPlc/enabled", b"7")
        probe.publish("pyPlc/v2g/cmd", b"{oops")
        probe.publish("pyPlc/v2g/cmd", b'{"cmd": "fly"}')
        errors = []
        for _ in range(3):
            _, payload = await asyncio.to_thread(
                probe.wait_for, lambda t, p: t == "pyPlc/v2g/error" and p not in errors, 5)
            errors.append(payload)
        events = [json.loads(e) for e in errors]
        assert {e["topic"] for e in events} == {"pyPlc/enabled", "pyPlc/v2g/cmd"}
        reasons = " | ".join(e["reason"] for e in events)
        assert "above the maximum 1" in reasons and "invalid JSON" in reasons and "cmd" in reasons
        assert any(e["payload"] == "{oops" for e in events)
        probe.publish("pyPlc/enabled", b"0")
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.02)
        assert got == [0]  # only the valid message reached the handler; the service is alive
        await bus.close()

    asyncio.run(main())


def test_handler_exception_is_reported_not_fatal(mosquitto, probe_factory):
    async def main() -> None:
        bus = _bus("v2g", mosquitto.url)
        calls: list[object] = []

        def handler(_p: str, v: object) -> None:
            calls.append(v)
            if len(calls) == 1:
                raise RuntimeError("boom")

        bus.subscribe("enabled", handler)
        await bus.start()
        probe = probe_factory(mosquitto.port)
        probe.subscribe("pyPlc/v2g/error")
        probe.publish("pyPlc/enabled", b"1")
        _, payload = await asyncio.to_thread(probe.wait_for, lambda t, p: t.endswith("/error"), 5)
        assert "boom" in json.loads(payload)["reason"]
        probe.publish("pyPlc/enabled", b"0")
        for _ in range(100):
            if len(calls) == 2:
                break
            await asyncio.sleep(0.02)
        assert calls == [1, 0]
        await bus.close()

    asyncio.run(main())
