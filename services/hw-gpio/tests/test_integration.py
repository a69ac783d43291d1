"""The watchdog end to end: a real mosquitto, hw as a child process, a fake v2g killed mid-charge.

The fake v2g connects as service "v2g" (its last will is `v2g/status offline`), drives hw into
CurrentDemand and is SIGKILLed (or the broker is). From the recorded topics alone the tests check
the safe shutdown: contactors open only once the current is below the threshold, the lock releases
after that with the voltage gone, all within the configured times.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ccsbus.stack import ServiceProcess, stack_env
from ccsbus.testing.fixtures import Mosquitto

HERE = Path(__file__).resolve().parent
THRESHOLD = 1.0
OPEN_TIMEOUT = 3.0
BROKER_LOSS = 0.5
BATTERY = 330.0  # start SoC 30 % of the 300..400 V sim battery


@dataclass
class Msg:
    at: float  # monotonic time of arrival
    path: str
    value: Any
    retained: bool


@dataclass
class Recorder:
    """Records every message below a base; re-subscribes after a broker restart."""

    port: int
    base: str
    messages: list[Msg] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_connect = lambda c, *a: c.subscribe(f"{self.base}/#", qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)

    def start(self) -> None:
        self.client.connect("127.0.0.1", self.port, keepalive=5)
        self.client.loop_start()

    def suspend(self) -> None:
        """Stop the network loop while the broker is gone (its backoff would delay us)."""
        self.client.loop_stop()

    def reconnect_fast(self, timeout: float = 10.0) -> None:
        """Connect again the moment the port opens (before hw's backoff brings it back)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.reconnect()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        raw = bytes(msg.payload).decode()
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        with self.lock:
            self.messages.append(Msg(time.monotonic(), msg.topic.removeprefix(self.base + "/"),
                                     value, bool(msg.retain)))

    def get(self, path: str, since: float = 0.0) -> list[Msg]:
        with self.lock:
            return [m for m in self.messages if m.path == path and m.at >= since and not
                    (m.retained and m.at < since)]

    def wait(self, cond: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def recorder_factory() -> Iterator[Any]:
    made: list[Recorder] = []

    def make(port: int, base: str) -> Recorder:
        rec = Recorder(port, base)
        rec.start()
        made.append(rec)
        return rec

    yield make
    for rec in made:
        rec.stop()


def start_stack(mosquitto: Mosquitto, role: str, base: str, tmp_path: Path,
                ) -> tuple[ServiceProcess, subprocess.Popen[str]]:
    env = stack_env(mosquitto.url, base, role, {
        "CCSBUS__HW__SIM__PLUGGED": "true",
        "CCSBUS__HW__SIM__START_SOC": "30",
        "CCSBUS__HW__SIM__ISOLATION_TIME": "0.3",
        "CCSBUS__HW__SAFETY__CURRENT_THRESHOLD": str(THRESHOLD),
        "CCSBUS__HW__SAFETY__CONTACTOR_OPEN_TIMEOUT": str(OPEN_TIMEOUT),
        "CCSBUS__HW__SAFETY__BROKER_LOSS_TIMEOUT": str(BROKER_LOSS),
        "CCSBUS__BROKER__KEEPALIVE": "2",
        "CCSBUS__BROKER__RECONNECT_MAX": "1",
        "CCSBUS_CONFIG": str(tmp_path / "none.yaml"),
    })
    hw = ServiceProcess("hw", env, log_file=str(tmp_path / "hw.log"))
    hw.start()
    fake = subprocess.Popen(
        [sys.executable, str(HERE / "fake_v2g.py"), mosquitto.url, base, role, str(BATTERY)],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    return hw, fake


def wait_charging(fake: subprocess.Popen[str], hw_log: Path) -> None:
    assert fake.stdout is not None
    line = fake.stdout.readline()  # the fake prints CHARGING or TIMEOUT
    assert line.strip() == "CHARGING", f"fake v2g: {line!r}\n{hw_log.read_text()[-3000:]}"


def steps(rec: Recorder, since: float) -> list[Msg]:
    return [m for m in rec.get("hw/safety", since) if m.value.get("event") == "shutdown"]


def check_shutdown(rec: Recorder, role: str, since: float, cause: str) -> None:
    # hw publishes a tick's safety events before that tick's hw/state: the state showing the lock
    # released may arrive just after the "done" event the caller waited for
    rec.wait(lambda: any(m.value["lock"] in ("unlocking", "unlocked") for m in rec.get("hw/state", since)),
             2.0, "hw/state to show the lock released")
    events = steps(rec, since)
    names = [m.value.get("step") for m in events]
    first = "cp_b" if role == "PEV" else "supply_off"
    assert names == ["start", first, "contactors_open", "unlocked", "done"], names
    assert events[0].value["cause"] == cause
    assert not [m for m in rec.get("hw/safety", since) if m.value["event"] == "forced_open"]
    opened = events[2].value
    assert abs(opened["current"]) < THRESHOLD
    assert events[3].value["inlet_voltage"] < 60.0
    # the times the service stamped on its steps: all within the configured bounds
    t = [m.value["time"] for m in events]
    assert t == sorted(t)
    assert t[2] - t[0] <= OPEN_TIMEOUT  # opened on the current, not on the timeout
    assert t[4] - t[0] <= OPEN_TIMEOUT + 2.0

    # hw/state: contactors were never reported open while current flowed, the lock released
    # only after they were open and the voltage was gone
    # ordered by the time hw stamped on them: after a reconnect the bus re-sends the retained
    # (latest) state before paho flushes the messages queued during the outage
    states = sorted((m.value for m in rec.get("hw/state", since)), key=lambda v: v["time"])
    first_open = next(i for i, s in enumerate(states) if s["contactors"] == "open")
    assert all(s["contactors"] in ("closed", "opening") for s in states[:first_open])
    assert abs(states[first_open]["present_current"]) < THRESHOLD
    released = [i for i, s in enumerate(states) if s["lock"] in ("unlocking", "unlocked")]
    assert released and released[0] > first_open
    for s in states[released[0]:]:
        assert s["contactors"] == "open" and s["inlet_voltage"] < 60.0
    if role == "PEV":
        cp = sorted((m.value for m in rec.get("cp/state", since) if m.value["time"] >= t[0]),
                    key=lambda v: v["time"])
        # the car switched to B first, before its contactors opened
        assert cp and cp[0]["state"] == "B" and cp[0]["time"] <= t[2]
        assert all(c["state"] == "B" for c in cp)


@pytest.mark.slow
@pytest.mark.parametrize("role", ["EVSE", "PEV"])
def test_v2g_killed_in_current_demand(mosquitto: Mosquitto, recorder_factory: Any,
                                      tmp_path: Path, role: str) -> None:
    base = f"it/{role.lower()}"
    rec = recorder_factory(mosquitto.port, base)
    hw, fake = start_stack(mosquitto, role, base, tmp_path)
    try:
        wait_charging(fake, tmp_path / "hw.log")
        current = "charger_current" if role == "EVSE" else "hw/state"
        rec.wait(lambda: any((m.value if role == "EVSE" else m.value["present_current"]) > 50
                             for m in rec.get(current)), 5, "current flowing")
        killed, wall_killed = time.monotonic(), time.time()
        os.kill(fake.pid, signal.SIGKILL)
        fake.wait(5)
        rec.wait(lambda: "done" in [m.value.get("step") for m in steps(rec, killed)],
                 OPEN_TIMEOUT + 5, "the shutdown to complete")
        offline = rec.get("v2g/status", killed)
        assert offline and offline[0].value == "offline"
        check_shutdown(rec, role, killed, "v2g_offline")
        # the will arrives as soon as the broker sees the socket close: the sequence starts at once
        stamped = [m.value["time"] for m in steps(rec, killed)]
        print(f"{role}: kill -> shutdown start {stamped[0] - wall_killed:.3f} s, "
              f"-> contactors open {stamped[2] - wall_killed:.3f} s, "
              f"-> unlocked {stamped[3] - wall_killed:.3f} s")
        assert stamped[0] - wall_killed < 1.0
        if role == "EVSE":  # the supply's present current as published, after the contactors
            opened_at = steps(rec, killed)[2].at
            late = [m.value for m in rec.get("charger_current", opened_at + 0.05)]
            assert all(abs(v) < THRESHOLD for v in late), late
        assert hw.alive(), (tmp_path / "hw.log").read_text()[-3000:]
    finally:
        if fake.poll() is None:
            fake.kill()
        hw.stop()


@pytest.mark.slow
@pytest.mark.parametrize("role", ["EVSE", "PEV"])
def test_broker_killed_in_current_demand(mosquitto: Mosquitto, recorder_factory: Any,
                                         tmp_path: Path, role: str) -> None:
    base = f"itb/{role.lower()}"
    rec = recorder_factory(mosquitto.port, base)
    hw, fake = start_stack(mosquitto, role, base, tmp_path)
    try:
        wait_charging(fake, tmp_path / "hw.log")
        time.sleep(0.3)
        wall_kill = time.time()
        mono_kill = time.monotonic()
        mosquitto.kill()
        rec.suspend()
        # the hardware acts while the broker is gone: give it the loss timeout plus the ramp.
        # hw retries its connection every 1 s after the kill; restarting half-way between two
        # tries lets the recorder subscribe before hw flushes the messages it queued
        time.sleep(max(0.0, mono_kill + 3.5 - time.monotonic()))
        wall_restart = time.time()
        mosquitto.start()
        rec.reconnect_fast()
        try:
            rec.wait(lambda: "done" in [m.value.get("step") for m in steps(rec, mono_kill)],
                     10, "the queued shutdown steps after the broker restart")
        except AssertionError:
            print([(round(m.at - mono_kill, 2), m.path, str(m.value)[:80])
                   for m in rec.messages if m.at > mono_kill])
            print((tmp_path / "hw.log").read_text()[-4000:])
            raise
        check_shutdown(rec, role, mono_kill, "broker_lost")
        stamped = [m.value["time"] for m in steps(rec, mono_kill)]
        # every step happened while the broker was down, and not before the loss timeout
        assert stamped[0] - wall_kill >= BROKER_LOSS - 0.05
        assert stamped[-1] < wall_restart
        # the fake v2g reconnects too and its retained requests come back: hw stays latched
        time.sleep(2.0)
        state = rec.get("hw/state")[-1].value
        assert state["contactors"] == "open" and state["lock"] == "unlocked", state
        assert state["latched"] is True
        assert hw.alive(), (tmp_path / "hw.log").read_text()[-3000:]
    finally:
        if fake.poll() is None:
            fake.kill()
        hw.stop()


@pytest.mark.slow
def test_sigterm_mid_charge_runs_the_sequence_before_exit(mosquitto: Mosquitto,
                                                          recorder_factory: Any,
                                                          tmp_path: Path) -> None:
    base = "its/pev"
    rec = recorder_factory(mosquitto.port, base)
    hw, fake = start_stack(mosquitto, "PEV", base, tmp_path)
    try:
        wait_charging(fake, tmp_path / "hw.log")
        since = time.monotonic()
        assert hw.stop(timeout=5.0) == 0  # SIGTERM: a clean exit, within the lifecycle's grace
        events = steps(rec, since)
        names = [m.value.get("step") for m in events]
        assert names == ["start", "cp_b", "contactors_open", "unlocked", "done"], names
        assert abs(events[2].value["current"]) < THRESHOLD
        assert rec.get("hw/status", since)[-1].value == "offline"
    finally:
        if fake.poll() is None:
            fake.kill()
        hw.stop()
