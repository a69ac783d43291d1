"""A service process against a real mosquitto: reconnect with retained state, QoS 1, SIGTERM, LWT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _start(url: str, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CCSBUS__BROKER__URL": url, "CCSBUS__BROKER__RECONNECT_MAX": "1"}
    return subprocess.Popen([sys.executable, str(HERE / "probe_service.py"), *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture
def service(mosquitto):
    proc = _start(mosquitto.url)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_reconnect_restores_retained_state_and_loses_no_command(mosquitto, service, probe_factory):
    probe = probe_factory(mosquitto.port)
    probe.subscribe("pyPlc/#")
    probe.wait_payload("pyPlc/v2g/status", b"online", timeout=15)
    probe.wait_payload("pyPlc/fsm_state", b"probe")

    probe.close()
    mosquitto.kill()  # the broker dies under the running service; it keeps no persistence
    time.sleep(0.5)
    mosquitto.start()
    assert service.poll() is None, "the service must survive the broker going away"

    probe = probe_factory(mosquitto.port)
    probe.subscribe("pyPlc/#")
    probe.wait_payload("pyPlc/v2g/status", b"online", timeout=15)
    # the restarted broker knew nothing: the retained state is there because the service sent it again
    assert probe.wait_payload("pyPlc/fsm_state", timeout=5) == b"probe"
    for i in range(20):
        probe.publish("pyPlc/v2g/cmd", json.dumps({"cmd": "stop", "value": i}), qos=1)
    _, payload = probe.wait_for(lambda t, p: t == "pyPlc/v2g/session"
                                and json.loads(p)["state"] == "got 20", timeout=10)
    assert json.loads(payload)["last_error"] == ",".join(str(i) for i in range(20))


def test_sigterm_stops_within_two_seconds_and_says_offline(mosquitto, service, probe_factory):
    probe = probe_factory(mosquitto.port)
    probe.subscribe("pyPlc/v2g/status")
    probe.wait_payload("pyPlc/v2g/status", b"online", timeout=15)
    started = time.monotonic()
    service.send_signal(signal.SIGTERM)
    assert service.wait(5) == 0
    assert time.monotonic() - started < 2.0
    probe.wait_payload("pyPlc/v2g/status", b"offline")


def test_kill_leaves_the_last_will(mosquitto, service, probe_factory):
    probe = probe_factory(mosquitto.port)
    probe.subscribe("pyPlc/v2g/status")
    probe.wait_payload("pyPlc/v2g/status", b"online", timeout=15)
    probe.clear()
    service.kill()
    service.wait()
    # the broker notices the dead connection after 1.5 keepalives at most
    probe.wait_payload("pyPlc/v2g/status", b"offline", timeout=15)


def test_embedded_broker_runs_the_service(embedded_broker, probe_factory):
    proc = _start(embedded_broker.url)
    try:
        probe = probe_factory(embedded_broker.port)
        probe.subscribe("pyPlc/#")
        probe.wait_payload("pyPlc/v2g/status", b"online", timeout=15)
        probe.publish("pyPlc/v2g/cmd", json.dumps({"cmd": "stop", "value": "x"}))
        _, payload = probe.wait_for(lambda t, p: t == "pyPlc/v2g/session", timeout=10)
        assert json.loads(payload)["last_error"] == "x"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
