"""The soc service end to end: topics on a real mosquitto in, HTTP to a real local SmartEVSE out."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

from ccsbus.config import ConfigError, load_config, parse_dataclass
from ccsbus.lifecycle import serve
from ccsbus_soc.service import SPEC, SocSettings
from ccsbus_soc.values import Variant


class Running:
    """The service in its own thread and event loop, stopped like SIGTERM would."""

    def __init__(self, url: str, base: str, settings: SocSettings, role: str = "EVSE") -> None:
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

    def stop(self) -> float:
        started = time.monotonic()
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(5)
        return time.monotonic() - started


def states(probe: Any, base: str) -> list[dict[str, Any]]:
    return [json.loads(p) for t, p, _ in list(probe.seen) if t == f"{base}/soc/state"]


def test_topics_reach_smartevse_and_state_is_published(mosquitto: Any, probe_factory: Any,
                                                       smartevse: Any) -> None:
    base = "bench/soc1"
    probe = probe_factory(mosquitto.port)
    probe.subscribe(f"{base}/#")
    settings = SocSettings(endpoint=smartevse.url, timeout=1.0, retry_min=0.1, retry_max=0.5,
                           min_interval=0.2, capacity_fallback_wh=45000)
    service = Running(mosquitto.url, base, settings)
    try:
        probe.wait_payload(f"{base}/soc/status", b"online")
        probe.publish(f"{base}/evccid", "D83ADD123456", retain=True)
        probe.publish(f"{base}/soc", "-1", retain=True)  # unknown: nothing is sent yet
        time.sleep(0.4)
        assert smartevse.requests == []
        for soc in range(30, 40):
            probe.publish(f"{base}/soc", str(soc), retain=True)
        probe.publish(f"{base}/v2g/session", json.dumps({
            "role": "EVSE", "state": "CurrentDemand", "time": 1.0, "energy_request": 21000,
            "full_soc": 90}), retain=True)
        probe.wait_for(lambda t, p: t == f"{base}/soc/state" and json.loads(p)["successes"] >= 1
                       and not json.loads(p)["in_flight"]
                       and "energy_request=21000" in (json.loads(p)["last_request"] or ""), 5)
        probe.publish(f"{base}/soc", "abc")  # bad input: rejected on soc/error, service goes on
        probe.wait_for(lambda t, p: t == f"{base}/soc/error", 3)
        probe.publish(f"{base}/soc", "41", retain=True)
        probe.wait_for(lambda t, p: t == f"{base}/soc/state"
                       and "current_soc=41" in (json.loads(p)["last_request"] or "")
                       and not json.loads(p)["in_flight"] and json.loads(p)["last_status"] == 200, 5)
    finally:
        took = service.stop()
    assert not service.errors
    assert took < 2.0
    assert smartevse.max_in_flight == 1
    assert len(smartevse.requests) <= 6  # 11 SoC values and a session update, coalesced
    last = smartevse.requests[-1].params
    assert last == {"current_soc": "41", "full_soc": "90", "energy_capacity": "45000",
                    "energy_request": "21000", "evccid": "D83ADD123456"}
    assert smartevse.state.energy_request == 21000


def test_wallbox_down_keeps_the_service_running(mosquitto: Any, probe_factory: Any,
                                                fake_factory: Any) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = "bench/soc2"
    probe = probe_factory(mosquitto.port)
    probe.subscribe(f"{base}/#")
    settings = SocSettings(endpoint=f"http://127.0.0.1:{port}/ev_state", timeout=0.5,
                           retry_min=0.1, retry_max=0.3, min_interval=0.0)
    service = Running(mosquitto.url, base, settings)
    try:
        probe.wait_payload(f"{base}/soc/status", b"online")
        probe.publish(f"{base}/soc", "55", retain=True)
        probe.wait_for(lambda t, p: t == f"{base}/soc/state" and json.loads(p)["failures"] >= 3, 5)
        wallbox = fake_factory(port)
        probe.wait_for(lambda t, p: t == f"{base}/soc/state" and json.loads(p)["last_status"] == 200
                       and not json.loads(p)["in_flight"], 5)
    finally:
        service.stop()
    assert not service.errors
    assert [r.params["current_soc"] for r in wallbox.requests] == ["55"]
    assert any("connection failed" in (s["last_error"] or "") for s in states(probe, base))


def test_v4_variant_sends_update_request(mosquitto: Any, probe_factory: Any, smartevse: Any) -> None:
    base = "bench/soc3"
    probe = probe_factory(mosquitto.port)
    probe.subscribe(f"{base}/#")
    service = Running(mosquitto.url, base, SocSettings(endpoint=smartevse.url, variant=Variant.V4,
                                                       min_interval=0.0))
    try:
        probe.wait_payload(f"{base}/soc/status", b"online")
        probe.publish(f"{base}/soc", "12", retain=True)
        probe.wait_for(lambda t, p: t == f"{base}/soc/state" and json.loads(p)["last_status"] == 200, 5)
    finally:
        service.stop()
    assert [(r.method, r.params) for r in smartevse.requests] == [("GET", {"update_ev_state": "1"})]


def test_example_config_and_bad_endpoint() -> None:
    settings = load_config(env={}).section("soc", SocSettings)
    assert settings.endpoint == "" and settings.variant is Variant.V3
    with pytest.raises(ConfigError, match="soc.endpoint"):
        parse_dataclass(SocSettings, {"endpoint": "smartevse.local/ev_state"}, "soc")
    with pytest.raises(ConfigError, match="soc.variant"):
        parse_dataclass(SocSettings, {"variant": "v5"}, "soc")
