"""The ha service on a real mosquitto: retained discovery, re-publish on HA `online`, clean removal."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from ccsbus.config import ConfigError, load_config, parse_dataclass
from ccsbus.contract import load_contract
from ccsbus.lifecycle import serve
from ccsbus.stack import ServiceProcess, stack_env
from ccsbus_ha.discovery import topics_named
from ccsbus_ha.service import SPEC, HaSettings


class Running:
    def __init__(self, url: str, base: str, settings: HaSettings, role: str = "EVSE") -> None:
        stack = load_config(env={"CCSBUS__BROKER__URL": url, "CCSBUS__BROKER__BASE_TOPIC": base,
                                 "CCSBUS__ROLE": role})
        self.loop = asyncio.new_event_loop()
        self.stopping = asyncio.Event()
        self.errors: list[BaseException] = []

        def main() -> None:
            try:
                self.loop.run_until_complete(serve(SPEC, stack, settings, self.stopping))
            except BaseException as exc:
                self.errors.append(exc)

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(5)


def retained(probe_factory: Any, port: int, topic: str, timeout: float = 1.0) -> tuple[bytes, bool] | None:
    """What a new subscriber gets for `topic` (payload, retain flag), or None."""
    late = probe_factory(port)
    late.subscribe(topic)
    try:
        late.wait_payload(topic, None, timeout)
    except TimeoutError:
        return None
    return next((p, r) for t, p, r in late.seen if t == topic)


def test_discovery_retained_valid_and_republished(mosquitto: Any, probe_factory: Any) -> None:
    base = "bench/ha1"
    topic = "homeassistant/device/ccsbus_bench_ha1_evse/config"
    probe = probe_factory(mosquitto.port)
    probe.subscribe("homeassistant/#")
    probe.subscribe(f"{base}/#")
    service = Running(mosquitto.url, base, HaSettings(services=["v2g", "hw"]))
    try:
        payload = json.loads(probe.wait_payload(topic, None, 5))
        got = retained(probe_factory, mosquitto.port, topic)
        assert got is not None and got[1] is True  # retained for HA instances that start later
        assert json.loads(got[0]) == payload
        contract = load_contract().with_base(base)
        for full in topics_named(payload):
            assert full.startswith(base + "/")
            contract.find(contract.relative(full))  # KeyError: not a contract topic
        assert payload["cmps"]["soc"]["state_topic"] == f"{base}/soc"
        assert payload["cmps"]["enabled"]["command_topic"] == f"{base}/enabled"
        # Home Assistant restarts: it says online, we publish again
        count = sum(1 for t, _, _ in probe.seen if t == topic)
        probe.publish("homeassistant/status", "online", retain=True)
        probe.wait_for(lambda t, p: sum(1 for s, _, _ in probe.seen if s == topic) > count, 5)
        # offline is no request
        count = sum(1 for t, _, _ in probe.seen if t == topic)
        probe.publish("homeassistant/status", "offline", retain=True)
        probe.publish("homeassistant/status", "bogus")  # bad input: on ha/error, service goes on
        probe.wait_for(lambda t, p: t == f"{base}/ha/error", 3)
        assert sum(1 for t, _, _ in probe.seen if t == topic) == count
    finally:
        service.stop()
    assert not service.errors
    # remove_on_stop is off: the device stays in Home Assistant (shown unavailable)
    assert retained(probe_factory, mosquitto.port, topic) is not None


def test_disabled_at_start_removes_the_device(mosquitto: Any, probe_factory: Any) -> None:
    base = "bench/ha2"
    topic = "homeassistant/device/garage_ccs/config"
    probe = probe_factory(mosquitto.port)
    probe.publish(topic, json.dumps({"dev": {}, "o": {}, "cmps": {}}), retain=True)
    assert retained(probe_factory, mosquitto.port, topic) is not None
    probe.subscribe(f"{base}/ha/status")
    service = Running(mosquitto.url, base, HaSettings(enabled=False, device_id="garage_ccs"))
    try:
        probe.wait_payload(f"{base}/ha/status", b"online", 5)
        assert retained(probe_factory, mosquitto.port, topic) is None
    finally:
        service.stop()
    assert not service.errors


def test_sigterm_with_remove_on_stop_removes_the_device(mosquitto: Any, probe_factory: Any,
                                                        tmp_path: Any) -> None:
    base = "bench/ha3"
    topic = "homeassistant/device/ccsbus_bench_ha3_pev/config"
    probe = probe_factory(mosquitto.port)
    probe.subscribe("homeassistant/#")
    env = stack_env(mosquitto.url, base, "PEV", {"CCSBUS__HA__REMOVE_ON_STOP": "true"})
    proc = ServiceProcess("ha", env, log_file=str(tmp_path / "ha.log"))
    proc.start()
    try:
        payload = json.loads(probe.wait_payload(topic, None, 10))
        assert "battery_voltage" in payload["cmps"] and "enabled" not in payload["cmps"]
    finally:
        code = proc.stop()
    assert code == 0, (tmp_path / "ha.log").read_text()[-2000:]
    assert probe.wait_payload(topic, b"", 3) == b""
    assert retained(probe_factory, mosquitto.port, topic) is None


def test_settings_validation() -> None:
    assert load_config(env={}).section("ha", HaSettings).enabled is True
    with pytest.raises(ConfigError, match=r"ha.services\[1\]"):
        parse_dataclass(HaSettings, {"services": ["v2g", "nope"]}, "ha")
    with pytest.raises(ConfigError, match="ha.device_id"):
        parse_dataclass(HaSettings, {"device_id": "a/b"}, "ha")
