"""The simulated power stage, battery and cable mapping, without MQTT."""

from __future__ import annotations

from typing import Any

import pytest

from ccsbus_hw.cable import peer_view_from
from ccsbus_hw.plant import EvsePlant, Fault, PeerView, PevPlant, VirtualCar, VirtualCharger
from ccsbus_hw.safety import Isolation, Side
from ccsbus_hw.settings import SimSettings

CFG = SimSettings(voltage_slew=100.0, current_slew=50.0, isolation_time=0.5, discharge_tau=0.1,
                  capacity_wh=1000.0, start_soc=50.0, battery_empty_v=300.0, battery_full_v=400.0,
                  max_voltage=500.0, max_current=200.0, cable_check_voltage=450.0)
CAR_CLOSED = PeerView(contactors_closed=True, voltage=350.0)


def run_evse(p: EvsePlant, seconds: float, dt: float = 0.01, **kw: Any) -> None:
    for _ in range(round(seconds / dt)):
        p.step(dt, **kw)


def test_supply_voltage_follows_setpoint_with_slew_rate() -> None:
    p = EvsePlant(CFG)
    kw: dict[str, Any] = dict(closed_cmd=True, cable_check=False, supply_enabled=True, target_voltage=380.0,
              target_current=0.0, peer=PeerView())
    run_evse(p, 1.0, **kw)
    assert p.supply_voltage == pytest.approx(100.0, abs=0.5)  # 100 V/s
    run_evse(p, 3.0, **kw)
    assert p.supply_voltage == pytest.approx(380.0)
    assert p.cable_voltage == pytest.approx(380.0)  # own contactors closed, car open


def test_supply_setpoint_is_clamped_to_max_voltage_and_overshoots_with_fault() -> None:
    p = EvsePlant(CFG, supply_voltage=499.0)
    run_evse(p, 0.5, closed_cmd=True, cable_check=False, supply_enabled=True,
             target_voltage=900.0, target_current=0.0, peer=PeerView())
    assert p.supply_voltage == 500.0
    p.faults.add(Fault.OVERSHOOT)
    run_evse(p, 1.0, closed_cmd=True, cable_check=False, supply_enabled=True,
             target_voltage=400.0, target_current=0.0, peer=PeerView())
    assert p.supply_voltage == pytest.approx(440.0)


def test_current_flows_only_when_both_sides_are_closed_and_follows_demand() -> None:
    p = EvsePlant(CFG)
    run_evse(p, 1.0, closed_cmd=True, cable_check=False, supply_enabled=True, target_voltage=350.0,
             target_current=80.0, peer=PeerView(contactors_closed=False, voltage=350.0))
    assert p.current == 0.0
    run_evse(p, 1.0, closed_cmd=True, cable_check=False, supply_enabled=True, target_voltage=350.0,
             target_current=80.0, peer=CAR_CLOSED)
    assert p.current == pytest.approx(50.0)  # 50 A/s slew
    run_evse(p, 4.0, closed_cmd=True, cable_check=False, supply_enabled=True, target_voltage=350.0,
             target_current=800.0, peer=CAR_CLOSED)
    assert p.current == pytest.approx(200.0)  # within the supply's limit
    run_evse(p, 0.2, closed_cmd=True, cable_check=False, supply_enabled=False, target_voltage=0.0,
             target_current=0.0, peer=CAR_CLOSED)
    assert p.current == pytest.approx(190.0)  # ramps down, does not jump
    p.step(0.01, closed_cmd=False, cable_check=False, supply_enabled=False, target_voltage=0.0,
           target_current=0.0, peer=CAR_CLOSED)
    assert p.current == 0.0


def test_isolation_check_takes_its_time_and_reports_faults() -> None:
    p = EvsePlant(CFG)
    kw: dict[str, Any] = dict(closed_cmd=True, cable_check=True, supply_enabled=False, target_voltage=0.0,
              target_current=0.0, peer=PeerView())
    run_evse(p, 0.3, **kw)
    assert p.isolation is Isolation.ONGOING
    run_evse(p, 0.3, **kw)
    assert p.isolation is Isolation.VALID  # the check runs once per rising edge of cable_check
    p.faults.add(Fault.ISOLATION)
    run_evse(p, 0.01, **kw)
    assert p.isolation is Isolation.FAULT
    run_evse(p, 0.01, **{**kw, "closed_cmd": False})
    assert p.isolation is Isolation.UNKNOWN


def test_open_cable_discharges() -> None:
    p = EvsePlant(CFG, cable_voltage=400.0)
    run_evse(p, 0.3, closed_cmd=False, cable_check=False, supply_enabled=False,
             target_voltage=0.0, target_current=0.0, peer=PeerView())
    assert 0 < p.cable_voltage < 60.0 / 2  # 400 * e^-3 ~ 20 V


def test_stuck_contactor_stays_closed() -> None:
    p = EvsePlant(CFG, faults={Fault.STUCK_CONTACTOR})
    p.step(0.01, closed_cmd=True, cable_check=False, supply_enabled=False, target_voltage=0.0,
           target_current=0.0, peer=PeerView())
    p.step(0.01, closed_cmd=False, cable_check=False, supply_enabled=False, target_voltage=0.0,
           target_current=0.0, peer=PeerView())
    assert p.contactors_closed


def test_battery_soc_integrates_energy_with_speedup() -> None:
    fast = SimSettings(capacity_wh=1000.0, start_soc=50.0, speedup=10.0, battery_empty_v=300.0,
                       battery_full_v=400.0)
    b = PevPlant(fast)
    charger = PeerView(contactors_closed=True, voltage=350.0, current=10.0)
    for _ in range(100):
        b.step(0.1, closed_cmd=True, peer=charger)  # 10 s at 350 V, 10 A, x10
    # ~355 V (rising with SoC) * 10 A * 10 s / 3600 * 10 = ~98.6 Wh -> ~+9.9 % of 1000 Wh
    assert b.soc == pytest.approx(50.0 + 100 * b.energy_wh / 1000.0)
    assert 9.72 < b.soc - 50.0 < 10.0
    assert b.current == 10.0


def test_battery_requests_taper_to_zero_at_full() -> None:
    b = PevPlant(SimSettings(start_soc=95.0, charge_current=100.0))
    assert b.target_current == pytest.approx(50.0)
    b.soc = 100.0
    assert b.target_current == 0.0


def test_inlet_voltage_follows_contactor_state() -> None:
    b = PevPlant(CFG)  # 50 % -> 350 V
    b.step(0.01, closed_cmd=False, peer=PeerView(contactors_closed=True, voltage=123.0))
    assert b.inlet_voltage == 123.0  # the charger's output reaches the open inlet
    b.step(0.01, closed_cmd=True, peer=PeerView(contactors_closed=True, voltage=123.0))
    assert b.inlet_voltage == pytest.approx(350.0)  # the battery holds it once closed
    b.step(0.01, closed_cmd=False, peer=PeerView())
    assert b.inlet_voltage < 350.0
    assert b.current == 0.0


def test_virtual_car_closes_only_after_precharge_in_state_c() -> None:
    evse = EvsePlant(CFG, contactors_closed=True, supply_voltage=200.0)
    car = VirtualCar(PevPlant(CFG), cp_state="C")
    car.step(0.01, evse)
    assert not car.battery.contactors_closed
    evse.supply_voltage = 345.0
    car.step(0.01, evse)
    assert car.battery.contactors_closed


@pytest.mark.parametrize("follows", [True, False])
def test_virtual_car_follows_a_dc_session_on_cp(follows: bool) -> None:
    """B → C when the isolation check starts, C → B once the charger opened after charging."""
    evse = EvsePlant(CFG)
    car = VirtualCar(PevPlant(CFG), cp_state="B", follows_session=follows)

    def tick(seconds: float, **kw: Any) -> None:
        for _ in range(round(seconds / 0.01)):
            evse.step(0.01, peer=car.view(), **kw)
            car.step(0.01, evse)

    tick(0.2, closed_cmd=False, cable_check=False, supply_enabled=False, target_voltage=0.0,
         target_current=0.0)
    assert car.cp_state == "B"  # plugged, nothing asked of it yet
    tick(0.1, closed_cmd=True, cable_check=True, supply_enabled=False, target_voltage=0.0,
         target_current=0.0)
    assert car.cp_state == ("C" if follows else "B")
    battery_v = car.battery.battery_voltage
    tick(5.0, closed_cmd=True, cable_check=False, supply_enabled=True, target_voltage=battery_v,
         target_current=20.0)
    assert car.battery.contactors_closed is follows
    assert (evse.current > 1.0) is follows
    tick(1.0, closed_cmd=True, cable_check=False, supply_enabled=False, target_voltage=0.0,
         target_current=0.0)
    assert car.cp_state == ("C" if follows else "B")  # not while the charger's contactors are closed
    tick(0.1, closed_cmd=False, cable_check=False, supply_enabled=False, target_voltage=0.0,
         target_current=0.0)
    assert car.cp_state == "B"
    assert not car.battery.contactors_closed


def test_virtual_charger_precharges_and_delivers_in_state_c() -> None:
    charger = VirtualCharger(EvsePlant(CFG), plugged=True)
    car = PevPlant(CFG)
    for _ in range(500):
        charger.step(0.01, car, "C", 40.0)
        car.step(0.01, closed_cmd=abs(car.inlet_voltage - car.battery_voltage) < 20
                 or car.contactors_closed, peer=charger.view())
    assert car.contactors_closed and car.current == pytest.approx(40.0)
    for _ in range(200):
        charger.step(0.01, car, "B", 40.0)
        car.step(0.01, closed_cmd=True, peer=charger.view())
    assert car.current == 0.0 and not charger.supply.contactors_closed


def test_peer_view_mapping() -> None:
    car_state = {"contactors": "closed", "battery_voltage": 372.0, "time": 1}
    view = peer_view_from(Side.EVSE, car_state, {"state": "C", "time": 1})
    assert view == PeerView(contactors_closed=True, voltage=372.0, cp_state="C")
    charger_state = {"contactors": "opening", "present_voltage": 300.0, "supply_voltage": 310.0,
                     "present_current": 12.5, "time": 1}
    view = peer_view_from(Side.PEV, charger_state, {"state": "C", "duty": 5, "time": 1})
    assert view == PeerView(contactors_closed=True, voltage=310.0, current=12.5, duty=5.0)
    gone = peer_view_from(Side.PEV, charger_state, {"state": "C", "duty": 5}, online=False)
    assert not gone.contactors_closed and gone.current == 0.0 and not gone.present
    assert peer_view_from(Side.EVSE, None, {"state": "C"}).cp_state == "A"  # stale car: unplugged


def test_supply_holds_after_the_isolation_check_until_a_target_arrives() -> None:
    p = EvsePlant(CFG, contactors_closed=True, supply_voltage=450.0)
    run_evse(p, 0.5, closed_cmd=True, cable_check=False, supply_enabled=True, target_voltage=0.0,
             target_current=0.0, peer=PeerView())
    assert p.supply_voltage == 450.0
    run_evse(p, 0.5, closed_cmd=True, cable_check=False, supply_enabled=True,
             target_voltage=360.0, target_current=0.0, peer=PeerView())
    assert p.supply_voltage == pytest.approx(400.0)  # down at 100 V/s towards the target
    run_evse(p, 0.5, closed_cmd=True, cable_check=False, supply_enabled=False,
             target_voltage=360.0, target_current=0.0, peer=PeerView())
    assert p.supply_voltage == pytest.approx(350.0)  # disabled: towards zero
