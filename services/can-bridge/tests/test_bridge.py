"""The bridge logic on a synthetic clock: topics from car frames, charger frames, timeouts, stops."""

from __future__ import annotations

from typing import Any

from ccsbus_can import board, chademo
from ccsbus_can.bridge import (
    BatteryVoltageSource,
    BoardBridge,
    ChademoBridge,
    ChademoParams,
    Output,
    Publish,
    Reject,
    Send,
)
from ccsbus_can.chademo import VehicleFault, VehicleStatus


def car_frames(target_v: int = 400, current: int = 120, soc: int = 55,
               faults: int = 0, status: int = VehicleStatus.CHARGING_ENABLED) -> list[tuple[int, bytes]]:
    return [
        (0x100, chademo.encode_vehicle_limits(chademo.VehicleLimits(450, 100))),
        (0x101, chademo.encode_vehicle_times(chademo.VehicleTimes(3600, 40, 40_000))),
        (0x102, chademo.encode_vehicle_request(chademo.VehicleRequest(
            2, target_v, current, VehicleFault(faults), VehicleStatus(status), soc))),
    ]


def feed(bridge: ChademoBridge, now: float, **kw: Any) -> list[Output]:
    out: list[Output] = []
    for can_id, data in car_frames(**kw):
        out += bridge.on_frame(can_id, data, now)
    return out


def published(out: list[Output], path: str) -> list[Any]:
    return [o.value for o in out if isinstance(o, Publish) and o.path == path]


def sent(out: list[Output], can_id: int) -> list[bytes]:
    return [o.data for o in out if isinstance(o, Send) and o.can_id == can_id]


def test_car_frames_become_topics_once_per_change() -> None:
    bridge = ChademoBridge()
    out = feed(bridge, 0.0)
    assert published(out, "target_voltage") == [400]
    assert published(out, "battery_voltage") == [400]
    assert published(out, "target_current") == [120]
    assert published(out, "soc") == [55]
    assert published(out, "battery_capacity") == [40_000]
    assert published(out, "can/event")[0]["event"] == "vehicle_present"
    # the same values again publish nothing; a new request publishes only what changed
    assert [o for o in feed(bridge, 0.1) if isinstance(o, Publish)] == []
    out = feed(bridge, 0.2, current=80)
    assert [o.path for o in out if isinstance(o, Publish)] == ["target_current"]


def test_battery_voltage_source_is_configurable() -> None:
    bridge = ChademoBridge(ChademoParams(
        battery_voltage_source=BatteryVoltageSource.MAX_BATTERY_VOLTAGE))
    assert published(feed(bridge, 0.0), "battery_voltage") == [450]
    silent = ChademoBridge(ChademoParams(battery_voltage_source=BatteryVoltageSource.NONE))
    assert published(feed(silent, 0.0), "battery_voltage") == []


def test_charger_frames_follow_the_topics_on_the_cycle() -> None:
    bridge = ChademoBridge()
    for path, value in (("charger_max_voltage", 500), ("charger_max_current", 200),
                        ("charger_voltage", 398), ("charger_current", 99), ("relay_request", "on"),
                        ("lock_request", "lock")):
        bridge.on_topic(path, value)
    feed(bridge, 0.0)
    frames = bridge.tick(0.0)
    limits = chademo.decode_charger_limits(sent(frames, 0x108)[0])
    assert (limits.available_voltage, limits.available_current) == (500, 200)
    assert limits.threshold_voltage == 450  # the car's maximum from 0x100
    state = chademo.decode_charger_state(sent(frames, 0x109)[0])
    assert (state.present_voltage, state.present_current) == (398, 99)
    assert state.status == chademo.ChargerStatus.ENERGIZING | chademo.ChargerStatus.CONNECTOR_LOCKED
    # nothing more until the next 100 ms cycle, then exactly one pair
    assert sent(bridge.tick(0.05), 0x108) == []
    assert len(sent(bridge.tick(0.1), 0x108)) == 1
    count = sum(len(sent(bridge.tick(0.1 + i * 0.01), 0x109)) for i in range(1, 101))
    assert count == 10  # one second of ticks at 10 ms: ten cycles


def test_clamp_is_reported_once_per_episode() -> None:
    bridge = ChademoBridge()
    bridge.on_topic("charger_max_current", 300)
    events = []
    for i in range(20):
        out = bridge.tick(i * 0.1)
        if sent(out, 0x108):
            assert sent(out, 0x108)[0][3] == 255
        events += [e for e in published(out, "can/event") if e["event"] == "clamped"]
    assert len(events) == 1
    assert events[0]["field"] == "available_current"
    assert (events[0]["value"], events[0]["sent"]) == (300, 255)
    bridge.on_topic("charger_max_current", 200)
    assert not [e for e in published(bridge.tick(2.0), "can/event")]
    bridge.on_topic("charger_max_current", 400)
    again = published(bridge.tick(2.1), "can/event")
    assert [e["event"] for e in again] == ["clamped"]


def test_car_values_beyond_the_contract_are_clamped_and_reported() -> None:
    bridge = ChademoBridge()
    out = feed(bridge, 0.0, target_v=2000, soc=130)
    assert published(out, "target_voltage") == [1500]
    assert published(out, "soc") == [100]
    fields = sorted(e["field"] for e in published(out, "can/event") if e["event"] == "clamped")
    assert fields == ["battery_voltage", "soc", "target_voltage"]


def test_silent_vehicle_means_current_zero_and_one_stop() -> None:
    bridge = ChademoBridge()
    feed(bridge, 0.0)
    bridge.tick(0.0)
    assert published(bridge.tick(0.95), "v2g/cmd") == []
    out = bridge.tick(1.0)
    assert published(out, "target_current") == [0]
    assert published(out, "v2g/cmd") == [{"cmd": "stop", "value": "vehicle silent"}]
    assert [e["event"] for e in published(out, "can/event")] == ["vehicle_lost", "stop_requested"]
    later = bridge.tick(2.0)
    assert published(later, "v2g/cmd") == [] and published(later, "target_current") == []
    state = chademo.decode_charger_state(sent(later, 0x109)[0])
    assert chademo.ChargerStatus.STOP_CONTROL in state.status
    assert bridge.state(2.0)["stop_requested"] is True
    # the car comes back asking for charge: a new episode, current flows through again
    out = feed(bridge, 3.0, current=50)
    assert published(out, "target_current") == [50]
    assert bridge.stop_reason is None


def test_vehicle_fault_stops_and_holds_current_at_zero() -> None:
    bridge = ChademoBridge()
    feed(bridge, 0.0)
    out = feed(bridge, 0.1, faults=VehicleFault.HIGH_BATTERY_TEMPERATURE)
    assert published(out, "v2g/cmd") == [{"cmd": "stop",
                                          "value": "vehicle fault: high_battery_temperature"}]
    assert published(out, "target_current") == [0]
    out = feed(bridge, 0.2, faults=VehicleFault.HIGH_BATTERY_TEMPERATURE, current=130)
    assert published(out, "target_current") == [] and published(out, "v2g/cmd") == []
    assert bridge.state(0.2)["faults"] == ["high_battery_temperature"]


def test_bad_frame_is_rejected_once_until_a_good_one() -> None:
    bridge = ChademoBridge()
    first = bridge.on_frame(0x102, b"\x01", 0.0)
    assert len(first) == 1 and isinstance(first[0], Reject) and "0x102" in first[0].reason
    assert bridge.on_frame(0x102, b"\x01", 0.1) == []
    feed(bridge, 0.2)
    assert isinstance(bridge.on_frame(0x102, b"", 0.3)[0], Reject)
    assert bridge.on_frame(0x7FF, b"", 0.3) == []  # other ids are not ours


def test_state_heartbeat_and_changes() -> None:
    bridge = ChademoBridge(ChademoParams(state_interval=1.0))
    assert len(published(bridge.tick(0.0), "can/state")) == 1
    assert published(bridge.tick(0.5), "can/state") == []
    feed(bridge, 0.6)
    changed = published(bridge.tick(0.6), "can/state")
    assert changed and changed[0]["vehicle"]["target_voltage"] == 400
    assert changed[0]["vehicle_present"] is True
    assert published(bridge.tick(1.7), "can/state")  # heartbeat


def test_board_frames_each_cycle_and_mac_every_30() -> None:
    bridge = BoardBridge()
    for path, value in (("soc", 42), ("target_voltage", 400), ("target_current", 100),
                        ("charger_voltage", 399), ("charger_current", 98),
                        ("evccid", "D83ADD123456"), ("v2g/session", {"session_id": "01"})):
        bridge.on_topic(path, value)
    out: list[Output] = []
    for i in range(60):
        out += bridge.tick(i * 0.1)
    assert len(sent(out, board.INFO_ID)) == 60
    assert len(sent(out, board.VALUES_ID)) == 60
    macs = sent(out, board.MAC_ID)
    assert len(macs) == 2
    assert macs[0] == bytes.fromhex("d83add123456") + (1).to_bytes(2, "little")
    info = sent(out, board.INFO_ID)[0]
    assert info[0] == 0x07 and info[1] == 42
    assert board.decode_values(sent(out, board.VALUES_ID)[0]) == board.BoardValues(400, 100, 399, 98)
    bridge.on_topic("soc", -1)
    bridge.on_topic("enabled", 0)
    assert sent(bridge.tick(6.0), board.INFO_ID)[0][:2] == bytes([0x03, 0xFF])
