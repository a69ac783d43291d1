"""CHAdeMO and board frame codecs: layouts, round trips and clamping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccsbus_can import board, chademo
from ccsbus_can.chademo import ChargerStatus, VehicleFault, VehicleStatus


def test_vehicle_request_layout() -> None:
    # protocol 2, target 0x0190 = 400 V, 120 A, fault byte 0, status: charging enabled, SoC 55
    request = chademo.decode_vehicle_request(bytes([2, 0x90, 0x01, 120, 0x00, 0x01, 55, 0]))
    assert request.protocol == 2
    assert request.target_voltage == 400
    assert request.current_request == 120
    assert request.faults == VehicleFault(0)
    assert request.status == VehicleStatus.CHARGING_ENABLED
    assert request.charged_rate == 55


def test_vehicle_limits_and_times_layout() -> None:
    limits = chademo.decode_vehicle_limits(bytes([0xC2, 0x01, 0, 0, 0, 0, 100, 0]))
    assert (limits.max_battery_voltage, limits.charged_rate_reference) == (450, 100)
    # 0xFF in byte 0: the maximum charging time is in byte 1 (minutes); capacity 400 x 0.1 kWh
    times = chademo.decode_vehicle_times(bytes([0xFF, 90, 30, 0, 0, 0x90, 0x01, 0]))
    assert times.max_charging_time_s == 90 * 60
    assert times.estimated_charging_time_min == 30
    assert times.battery_capacity_wh == 40_000
    times = chademo.decode_vehicle_times(bytes([60, 0xFF, 30, 0, 0, 0, 0, 0]))
    assert times.max_charging_time_s == 600
    assert times.battery_capacity_wh is None


def test_fault_and_status_names_include_unnamed_bits() -> None:
    request = chademo.decode_vehicle_request(bytes([2, 0, 0, 0, 0x41, 0x05, 0, 0]))
    assert chademo.flag_names(request.faults) == ["battery_overvoltage", "bit6"]
    assert chademo.flag_names(request.status) == ["charging_enabled", "charging_system_fault"]


def test_short_frames_are_refused_with_the_frame_named() -> None:
    with pytest.raises(chademo.FrameError, match="0x102: 3 data bytes"):
        chademo.decode_vehicle_request(b"\x02\x00\x00")
    with pytest.raises(chademo.FrameError, match="0x100"):
        chademo.decode_vehicle_limits(b"")


def test_charger_limits_layout() -> None:
    encoded = chademo.encode_charger_limits(chademo.ChargerLimits(
        welding_detection=True, available_voltage=500, available_current=125,
        threshold_voltage=410))
    assert encoded.data == bytes([1, 0xF4, 0x01, 125, 0x9A, 0x01, 0, 0])
    assert encoded.clamps == []


def test_charger_state_layout() -> None:
    encoded = chademo.encode_charger_state(chademo.ChargerState(
        protocol=2, present_voltage=398.6, present_current=99.6,
        status=ChargerStatus.ENERGIZING | ChargerStatus.CONNECTOR_LOCKED, remaining_time_s=None))
    assert encoded.data == bytes([2, 0x8F, 0x01, 100, 0, 0x05, 0xFF, 0xFF])
    long = chademo.encode_charger_state(chademo.ChargerState(2, 0, 0, ChargerStatus(0), 3600))
    assert long.data[6:8] == bytes([0xFF, 60])
    short = chademo.encode_charger_state(chademo.ChargerState(2, 0, 0, ChargerStatus(0), 600))
    assert short.data[6:8] == bytes([60, 0xFF])


def test_current_above_a_byte_is_clamped_and_reported() -> None:
    encoded = chademo.encode_charger_limits(chademo.ChargerLimits(True, 920, 300, 500))
    assert encoded.data[3] == 255
    assert encoded.clamps == [chademo.Clamp("available_current", 300, 255)]
    negative = chademo.encode_charger_state(chademo.ChargerState(2, -20, -3, ChargerStatus(0), None))
    assert negative.data[1:4] == bytes([0, 0, 0])
    assert [c.field for c in negative.clamps] == ["present_voltage", "present_current"]
    # a rounding of noise to zero is no clamp
    assert chademo.encode_charger_state(
        chademo.ChargerState(2, 0, -0.3, ChargerStatus(0), None)).clamps == []


@given(voltage=st.integers(0, 0xFFFF), current=st.integers(0, 255), rate=st.integers(0, 255),
       faults=st.integers(0, 255), status=st.integers(0, 255))
def test_vehicle_request_round_trip(voltage: int, current: int, rate: int, faults: int,
                                    status: int) -> None:
    request = chademo.VehicleRequest(2, voltage, current, VehicleFault(faults),
                                     VehicleStatus(status), rate)
    assert chademo.decode_vehicle_request(chademo.encode_vehicle_request(request)) == request


@given(voltage=st.floats(-100, 70000), current=st.floats(-100, 600))
def test_charger_state_round_trip_within_range(voltage: float, current: float) -> None:
    encoded = chademo.encode_charger_state(chademo.ChargerState(2, voltage, current,
                                                                ChargerStatus.ENERGIZING, None))
    decoded = chademo.decode_charger_state(encoded.data)
    assert decoded.present_voltage == min(max(round(voltage), 0), 0xFFFF)
    assert decoded.present_current == min(max(round(current), 0), 255)
    clamped = {c.field for c in encoded.clamps}
    assert ("present_current" in clamped) == (not 0 <= round(current) <= 255)


def test_board_frames_layout() -> None:
    info = board.encode_info(board.BoardInfo.SESSION_ACTIVE | board.BoardInfo.CHARGING_ENABLED, 57.4)
    assert info.data == bytes([0x05, 57, 0, 0, 0, 0, 0, 0])
    assert board.encode_info(board.BoardInfo(0), None).data[1] == 0xFF
    values = board.encode_values(board.BoardValues(400, 125, 398, 124))
    assert values.data == bytes([0x90, 0x01, 125, 0, 0x8E, 0x01, 124, 0])
    assert board.decode_values(values.data) == board.BoardValues(400, 125, 398, 124)
    mac = board.encode_mac("D8:3A:DD:12:34:56", 7)
    assert mac.data == bytes([0xD8, 0x3A, 0xDD, 0x12, 0x34, 0x56, 7, 0])
    assert board.encode_mac("not a mac", 1).data[:6] == bytes(6)
    assert board.encode_mac("d83add123456", 0x1234).data == bytes.fromhex("d83add1234563412")
