"""The safety machine on its own: each invariant, the shutdown order, watchdogs, latch."""

from __future__ import annotations

from ccsbus_hw.safety import (
    Contactor,
    Isolation,
    Measurements,
    SafetyMachine,
    Shutdown,
    Side,
)
from ccsbus_hw.settings import SafetySettings

CFG = SafetySettings(current_threshold=1.0, contactor_open_timeout=2.0, unlock_voltage=60.0,
                     precharge_delta=20.0, broker_loss_timeout=1.0, feedback_timeout=0.5,
                     close_wait=0.5)

PRECHARGED = Measurements(inlet_voltage=395.0, battery_voltage=400.0)
CHARGING = Measurements(current=100.0, inlet_voltage=400.0, battery_voltage=400.0)
DEAD = Measurements(current=0.0, inlet_voltage=0.0, battery_voltage=400.0)


def pev_charging() -> SafetyMachine:
    m = SafetyMachine(Side.PEV, CFG)
    m.request_lock(True)
    m.request_cp("C")
    m.step(0.0, PRECHARGED)
    m.request_contactors(True)
    out = m.step(0.1, PRECHARGED)
    assert out.contactor is Contactor.CLOSED and out.lock and out.cp == "C"
    m.step(0.2, CHARGING)
    m.drain_events()
    return m


def kinds(m: SafetyMachine) -> list[tuple[str, str | None]]:
    return [(e.event, e.step) for e in m.drain_events()]


def test_pev_close_refused_without_lock() -> None:
    m = SafetyMachine(Side.PEV, CFG)
    m.request_contactors(True)
    out = m.step(0.0, PRECHARGED)
    assert out.contactor is Contactor.OPEN and m.drain_events() == []  # waits close_wait
    assert m.step(0.6, PRECHARGED).contactor is Contactor.OPEN
    events = m.drain_events()
    assert [e.event for e in events] == ["refused"]
    assert "lock" in events[0].reason


def test_pev_close_refused_when_inlet_differs_from_battery() -> None:
    m = SafetyMachine(Side.PEV, CFG)
    m.request_lock(True)
    m.request_contactors(True)
    m.step(0.0, Measurements(inlet_voltage=350.0, battery_voltage=400.0))
    out = m.step(0.6, Measurements(inlet_voltage=350.0, battery_voltage=400.0))
    assert out.contactor is Contactor.OPEN
    (event,) = m.drain_events()
    assert event.event == "refused" and "differs from battery" in event.reason
    assert event.data["inlet_voltage"] == 350.0


def test_pev_close_refused_when_battery_unknown() -> None:
    m = SafetyMachine(Side.PEV, CFG)
    m.request_lock(True)
    m.request_contactors(True)
    m.step(0.0, Measurements(inlet_voltage=0.0))
    assert m.step(0.6, Measurements(inlet_voltage=0.0)).contactor is Contactor.OPEN
    assert "battery voltage unknown" in m.drain_events()[0].reason


def test_pev_close_waits_for_the_precharge_the_requester_already_saw() -> None:
    m = SafetyMachine(Side.PEV, CFG)
    m.request_lock(True)
    m.request_contactors(True)
    assert m.step(0.0, Measurements(inlet_voltage=340.0, battery_voltage=400.0)).contactor \
        is Contactor.OPEN
    assert m.step(0.2, Measurements(inlet_voltage=379.0, battery_voltage=400.0)).contactor \
        is Contactor.OPEN
    assert m.step(0.3, Measurements(inlet_voltage=381.0, battery_voltage=400.0)).contactor \
        is Contactor.CLOSED
    assert m.drain_events() == []


def test_pending_close_is_dropped_by_an_open_request() -> None:
    m = SafetyMachine(Side.PEV, CFG)
    m.request_lock(True)
    m.request_contactors(True)
    m.step(0.0, Measurements(inlet_voltage=0.0, battery_voltage=400.0))
    m.request_contactors(False)
    assert m.step(0.1, PRECHARGED).contactor is Contactor.OPEN


def test_evse_close_needs_valid_isolation() -> None:
    m = SafetyMachine(Side.EVSE, CFG)
    m.request_lock(True)
    m.request_contactors(True)
    m.step(0.0, Measurements(cp_state="C", isolation=Isolation.UNKNOWN))
    out = m.step(0.6, Measurements(cp_state="C", isolation=Isolation.UNKNOWN))
    assert out.contactor is Contactor.OPEN
    assert "isolation" in m.drain_events()[0].reason
    m.request_contactors(True)
    out = m.step(0.1, Measurements(cp_state="C", isolation=Isolation.VALID))
    assert out.contactor is Contactor.CLOSED


def test_evse_cable_check_locks_then_closes_and_ends_with_result() -> None:
    m = SafetyMachine(Side.EVSE, CFG)
    m.request_cable_check()
    out = m.step(0.0, Measurements(cp_state="C", lock_feedback=False))
    assert out.lock and out.contactor is Contactor.OPEN  # lock commanded, feedback not yet there
    out = m.step(0.1, Measurements(cp_state="C", lock_feedback=True))
    assert out.contactor is Contactor.CLOSED and out.cable_check
    out = m.step(0.2, Measurements(cp_state="C", lock_feedback=True, isolation=Isolation.ONGOING))
    assert out.cable_check and not out.supply_enabled
    out = m.step(0.3, Measurements(cp_state="C", lock_feedback=True, isolation=Isolation.VALID))
    assert not out.cable_check and out.supply_enabled


def test_evse_cable_check_refused_without_car() -> None:
    m = SafetyMachine(Side.EVSE, CFG)
    m.request_cable_check()
    out = m.step(0.0, Measurements(cp_state="A"))
    assert out.contactor is Contactor.OPEN
    assert any("no car connected" in e.reason for e in m.drain_events())


def test_open_waits_for_current_then_opens() -> None:
    m = pev_charging()
    m.request_contactors(False)
    assert m.step(1.0, CHARGING).contactor is Contactor.OPENING
    assert m.step(1.5, Measurements(current=5.0, inlet_voltage=400.0)).contactor \
        is Contactor.OPENING
    assert m.step(1.6, Measurements(current=0.5, inlet_voltage=400.0)).contactor \
        is Contactor.OPEN
    assert m.drain_events() == []  # a normal open is no safety event


def test_open_forced_after_timeout_with_error_event() -> None:
    m = pev_charging()
    m.request_contactors(False)
    m.step(1.0, CHARGING)
    assert m.step(2.9, CHARGING).contactor is Contactor.OPENING
    out = m.step(3.0, CHARGING)
    assert out.contactor is Contactor.OPEN
    (event,) = m.drain_events()
    assert event.event == "forced_open" and event.data["waited"] >= CFG.contactor_open_timeout


def test_unlock_deferred_until_open_and_below_60_volts() -> None:
    m = pev_charging()
    m.request_lock(False)
    out = m.step(1.0, CHARGING)
    assert out.lock
    assert kinds(m) == [("deferred", None)]
    m.request_contactors(False)
    m.step(1.1, Measurements(current=0.0, inlet_voltage=400.0))
    assert m.out.contactor is Contactor.OPEN and m.out.lock
    assert m.step(1.2, Measurements(inlet_voltage=61.0)).lock
    assert not m.step(1.3, Measurements(inlet_voltage=59.0)).lock


def test_v2g_offline_runs_the_sequence_in_order() -> None:
    m = pev_charging()
    m.set_v2g_online(False)
    out = m.step(1.0, CHARGING)
    assert out.cp == "B" and out.contactor is Contactor.OPENING and out.lock
    m.step(1.2, Measurements(current=30.0, inlet_voltage=400.0))
    m.step(1.4, Measurements(current=0.2, inlet_voltage=400.0))
    assert m.out.contactor is Contactor.OPEN and m.out.lock
    m.step(1.6, Measurements(inlet_voltage=10.0))
    assert not m.out.lock and m.shutdown is Shutdown.DONE
    assert kinds(m) == [("shutdown", "start"), ("shutdown", "cp_b"),
                        ("shutdown", "contactors_open"), ("shutdown", "unlocked"),
                        ("shutdown", "done")]


def test_latch_refuses_stale_requests_until_rearmed() -> None:
    m = pev_charging()
    m.set_v2g_online(False)
    m.step(1.0, DEAD)
    m.step(1.1, DEAD)
    assert m.shutdown is Shutdown.DONE and m.latched
    m.set_v2g_online(True)
    m.request_lock(True)
    m.request_cp("C")
    m.request_contactors(True)  # a retained "on" of the dead instance
    out = m.step(2.0, PRECHARGED)
    assert out.contactor is Contactor.OPEN and out.cp == "B" and not out.lock
    refused = [e.reason for e in m.drain_events() if e.event == "refused"]
    assert len(refused) == 3 and all("latched" in r for r in refused)
    m.request_contactors(False)
    m.step(2.1, PRECHARGED)
    assert not m.latched
    m.request_lock(True)
    m.request_contactors(True)
    assert m.step(2.2, PRECHARGED).contactor is Contactor.CLOSED


def test_broker_loss_shuts_down_only_while_energy_flows() -> None:
    idle = SafetyMachine(Side.PEV, CFG)
    idle.set_broker_up(0.0, False)
    idle.step(5.0, DEAD)
    assert idle.shutdown is Shutdown.IDLE

    m = pev_charging()
    m.set_broker_up(1.0, False)
    assert m.step(1.9, CHARGING).contactor is Contactor.CLOSED
    m.set_broker_up(1.95, True)  # back within the timeout: nothing happens
    assert m.step(2.5, CHARGING).contactor is Contactor.CLOSED
    m.set_broker_up(3.0, False)
    out = m.step(4.0, CHARGING)
    assert out.contactor is Contactor.OPENING and out.cp == "B"
    assert m.cause is not None and m.cause.value == "broker_lost" and m.latched


def test_stuck_contactor_holds_the_lock() -> None:
    m = pev_charging()
    m.request_contactors(False)
    m.request_lock(False)
    stuck = Measurements(current=0.0, inlet_voltage=0.0, contactor_feedback=True)
    for i in range(20):
        out = m.step(1.0 + i * 0.1, stuck)
    assert out.contactor is Contactor.OPEN and out.lock
    assert "contactor_fault" in [e.event for e in m.drain_events()]


def test_contactor_that_does_not_close_starts_shutdown() -> None:
    m = SafetyMachine(Side.PEV, CFG)
    m.request_lock(True)
    m.step(0.0, PRECHARGED)
    m.request_contactors(True)
    no_fb = Measurements(inlet_voltage=395.0, battery_voltage=400.0, contactor_feedback=False)
    for i in range(10):
        m.step(0.1 * (i + 1), no_fb)
    assert m.cause is not None and m.cause.value == "contactor_fault"
    assert m.out.contactor is Contactor.OPEN


def test_restart_with_energy_on_the_wires_recovers_through_the_sequence() -> None:
    m = SafetyMachine(Side.PEV, CFG)
    m.recover(0.0, CHARGING)
    out = m.step(0.0, CHARGING)
    assert out.contactor is Contactor.OPENING and out.lock  # not dropped under load
    m.step(0.5, Measurements(current=0.0, inlet_voltage=400.0))
    assert m.out.contactor is Contactor.OPEN and m.out.lock
    m.step(0.6, DEAD)
    assert not m.out.lock and m.shutdown is Shutdown.DONE


def test_stop_button_shuts_down_evse() -> None:
    m = SafetyMachine(Side.EVSE, CFG)
    m.request_lock(True)
    m.request_contactors(True)
    m.step(0.0, Measurements(isolation=Isolation.VALID, cp_state="C"))
    assert m.out.contactor is Contactor.CLOSED and m.out.supply_enabled
    out = m.step(0.1, Measurements(isolation=Isolation.VALID, cp_state="C", stop_button=True,
                                   current=50.0))
    assert out.contactor is Contactor.OPENING and not out.supply_enabled
    assert m.cause is not None and m.cause.value == "stop_button"


def test_isolation_fault_while_charging_shuts_down() -> None:
    m = SafetyMachine(Side.EVSE, CFG)
    m.request_lock(True)
    m.request_contactors(True)
    m.step(0.0, Measurements(isolation=Isolation.VALID, cp_state="C"))
    m.step(0.1, Measurements(isolation=Isolation.FAULT, cp_state="C", current=10.0))
    assert m.cause is not None and m.cause.value == "isolation_fault"


def test_event_payload_is_json_ready() -> None:
    m = SafetyMachine(Side.PEV, CFG)
    m.request_lock(True)
    m.request_contactors(True)
    m.step(0.0, Measurements(inlet_voltage=float("inf"), battery_voltage=400.0))
    m.step(0.6, Measurements(inlet_voltage=float("inf"), battery_voltage=400.0))
    payload = m.drain_events()[0].as_payload(1234.5)
    assert payload["event"] == "refused" and payload["time"] == 1234.5
    assert payload["inlet_voltage"] is None


def test_restart_keeps_a_lock_that_reports_locked() -> None:
    m = SafetyMachine(Side.PEV, CFG)
    m.recover(0.0, Measurements(lock_feedback=True))
    assert m.step(0.0, Measurements(lock_feedback=True)).lock and m.shutdown is Shutdown.IDLE
    m.request_lock(False)
    assert not m.step(0.1, Measurements(lock_feedback=True)).lock


def test_restart_with_unknown_inlet_is_no_evidence_of_energy() -> None:
    m = SafetyMachine(Side.PEV, CFG)
    m.recover(0.0, Measurements(inlet_voltage=float("inf")))
    assert m.shutdown is Shutdown.IDLE and not m.out.lock


def test_evse_car_lost_while_charging_shuts_down() -> None:
    m = SafetyMachine(Side.EVSE, CFG)
    m.request_lock(True)
    m.request_contactors(True)
    m.step(0.0, Measurements(isolation=Isolation.VALID, cp_state="C"))
    out = m.step(0.1, Measurements(isolation=Isolation.VALID, cp_state="A", current=30.0))
    assert out.contactor is Contactor.OPENING and not out.supply_enabled
    assert m.cause is not None and m.cause.value == "cp_lost"


def test_evse_output_above_the_supply_maximum_shuts_down() -> None:
    m = SafetyMachine(Side.EVSE, CFG)
    m.request_lock(True)
    m.request_contactors(True)
    ok = Measurements(isolation=Isolation.VALID, cp_state="C", inlet_voltage=520.0,
                      voltage_limit=500.0)
    m.step(0.0, ok)
    m.step(0.1, ok)  # within 5 %
    assert m.shutdown is Shutdown.IDLE
    m.step(0.2, Measurements(isolation=Isolation.VALID, cp_state="C", inlet_voltage=530.0,
                             voltage_limit=500.0, current=20.0))
    assert m.cause is not None and m.cause.value == "overvoltage"
    assert m.out.contactor is Contactor.OPENING


def test_evse_cable_check_gives_up_when_the_lock_never_reports_locked() -> None:
    m = SafetyMachine(Side.EVSE, CFG)
    m.request_cable_check()
    m.step(0.0, Measurements(cp_state="C", lock_feedback=False))
    out = m.step(0.6, Measurements(cp_state="C", lock_feedback=False))
    assert out.contactor is Contactor.OPEN and not out.cable_check
    assert "did not report locked" in m.drain_events()[-1].reason
    m.step(0.7, Measurements(cp_state="C", lock_feedback=True))
    assert m.out.contactor is Contactor.OPEN  # a late lock does not start the check by itself


def test_evse_cuts_the_supply_when_the_car_returns_to_b() -> None:
    """IEC 61851: C -> B while charging means the car wants no more energy, whatever v2g says."""
    m = SafetyMachine(Side.EVSE, CFG)
    m.request_lock(True)
    m.request_contactors(True)
    m.step(0.0, Measurements(isolation=Isolation.VALID, cp_state="C"))
    assert m.step(0.1, Measurements(isolation=Isolation.VALID, cp_state="C", current=100.0)).supply_enabled
    m.drain_events()
    out = m.step(0.2, Measurements(isolation=Isolation.VALID, cp_state="B", current=100.0))
    assert not out.supply_enabled and out.contactor is Contactor.CLOSED  # current first, contactors later
    assert kinds(m) == [("autonomous", "supply_off")]
    assert not m.step(0.3, Measurements(isolation=Isolation.VALID, cp_state="B", current=5.0)).supply_enabled
    assert kinds(m) == []  # said once
    m.request_contactors(False)
    out = m.step(0.4, Measurements(isolation=Isolation.VALID, cp_state="B", current=0.0))
    assert out.contactor is not Contactor.CLOSED


def test_evse_precharge_in_state_b_keeps_the_supply() -> None:
    """A car that switches to C only at PowerDelivery precharges in B: that is no stop."""
    m = SafetyMachine(Side.EVSE, CFG)
    m.request_lock(True)
    m.request_contactors(True)
    m.step(0.0, Measurements(isolation=Isolation.VALID, cp_state="B"))
    assert m.step(0.1, Measurements(isolation=Isolation.VALID, cp_state="B", current=1.0)).supply_enabled
