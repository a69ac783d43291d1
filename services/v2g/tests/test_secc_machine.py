"""SECC state machines, pure: request trees in, response trees out, per protocol.

Every response is also encoded by the EXI codec (when the binding is installed), so a tree shape
that the schema refuses fails here rather than at a car.
"""

from __future__ import annotations

from typing import Any

import pytest

from ccsbus_v2g.secc.faults import FaultAction, FaultError, FaultInjector, parse_fault
from ccsbus_v2g.secc.machine import SeccMachine
from ccsbus_v2g.secc.model import EvseInputs, HwCommand, Isolation, SeccConfig, SeccState, Step


def pv(mult: int, unit: str, value: int) -> dict[str, Any]:
    return {"Multiplier": mult, "Unit": unit, "Value": value}


def ev_status(soc: int = 50, ready: bool = True) -> dict[str, Any]:
    return {"EVReady": ready, "EVErrorCode": "NO_ERROR", "EVRESSSOC": soc}


def req(sid: str, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"V2G_Message": {"Header": {"SessionID": sid}, "Body": {name: body or {}}}}


def dc_charge_parameter() -> dict[str, Any]:
    return {
        "DC_EVStatus": ev_status(30, False),
        "EVMaximumCurrentLimit": pv(-1, "A", 3750),
        "EVMaximumVoltageLimit": pv(0, "V", 470),
        "EVEnergyCapacity": pv(1, "Wh", 7850),
        "EVEnergyRequest": pv(1, "Wh", 1780),
        "FullSOC": 100,
        "BulkSOC": 80,
    }


def sequence(protocol: str) -> list[tuple[str, dict[str, Any]]]:
    """A full DC session's requests (name, body) in order."""
    din = protocol == "din"
    demand = {
        "DC_EVStatus": ev_status(60),
        "EVTargetCurrent": pv(0, "A", 100),
        "EVMaximumVoltageLimit": pv(0, "V", 470),
        "EVMaximumCurrentLimit": pv(0, "A", 375),
        "BulkChargingComplete": False,
        "ChargingComplete": False,
        "EVTargetVoltage": pv(-1, "V", 3800),
    }
    start: dict[str, Any] = (
        {"ReadyToChargeState": True} if din else {"ChargeProgress": "Start", "SAScheduleTupleID": 1})
    stop: dict[str, Any] = (
        {"ReadyToChargeState": False} if din else {"ChargeProgress": "Stop", "SAScheduleTupleID": 1})
    return [
        ("SessionSetupReq", {"EVCCID": "48C58DB1E43E"}),
        ("ServiceDiscoveryReq", {"ServiceCategory": "EVCharging"} if din else {}),
        ("ServicePaymentSelectionReq" if din else "PaymentServiceSelectionReq",
         {"SelectedPaymentOption": "ExternalPayment",
          "SelectedServiceList": {"SelectedService": [{"ServiceID": 1}]}}),
        ("ContractAuthenticationReq" if din else "AuthorizationReq", {}),
        ("ChargeParameterDiscoveryReq",
         {("EVRequestedEnergyTransferType" if din else "RequestedEnergyTransferMode"): "DC_extended",
          "DC_EVChargeParameter": dc_charge_parameter()}),
        ("CableCheckReq", {"DC_EVStatus": ev_status(30)}),
        ("PreChargeReq", {"DC_EVStatus": ev_status(30), "EVTargetVoltage": pv(-1, "V", 3700),
                          "EVTargetCurrent": pv(0, "A", 2)}),
        ("PowerDeliveryReq", start),
        ("CurrentDemandReq", demand),
        ("PowerDeliveryReq", stop),
        ("WeldingDetectionReq", {"DC_EVStatus": ev_status(61)}),
        ("SessionStopReq", {} if din else {"ChargingSession": "Terminate"}),
    ]


SID = "0A0B0C0D0E0F1011"
NOW = 1_700_000_000.0


def encodes(schema: str, tree: dict[str, Any]) -> None:
    exi = pytest.importorskip("ccsbus_exi", reason="the EXI binding ccsbus_exi is not built")
    assert exi.decode(schema, exi.encode(schema, tree)) == tree


def machine(protocol: str, **config: Any) -> SeccMachine:
    return SeccMachine(protocol, SeccConfig(**config), new_session_id=lambda: SID)


def ready_inputs() -> EvseInputs:
    return EvseInputs(authorized=True, isolation=Isolation.VALID, present_voltage=370.0,
                      present_current=0.0, contactors="closed")


def body(step: Step) -> dict[str, Any]:
    assert step.response is not None
    res: dict[str, Any] = step.response["V2G_Message"]["Body"][step.response_name]
    return res


@pytest.mark.parametrize("protocol", ["din", "iso2"])
def test_full_dc_session(protocol: str) -> None:
    m = machine(protocol)
    inputs = ready_inputs()
    sid = "00" if protocol == "din" else "0000000000000000"
    states = []
    hw: list[HwCommand] = []
    published: dict[str, Any] = {}
    for name, request_body in sequence(protocol):
        step = m.handle(req(sid, name, request_body), inputs, NOW)
        sid = SID
        assert step.response is not None, name
        assert step.response["V2G_Message"]["Header"]["SessionID"] == SID
        assert body(step)["ResponseCode"].startswith("OK"), (name, body(step))
        encodes(protocol, step.response)
        states.append(step.state)
        hw += step.hw
        published.update(step.publish)
        if name == "CableCheckReq":  # the first request only starts the check
            assert body(step)["EVSEProcessing"] == "Ongoing"
            inputs.isolation = Isolation.VALID
            step = m.handle(req(sid, name, request_body), inputs, NOW + 1)
            assert body(step)["EVSEProcessing"] == "Finished"
            states.append(step.state)
    assert states[-1] is SeccState.SESSION_STOPPED and step.close
    assert SeccState.CHARGING in states and SeccState.WELDING_DETECTION in states
    assert HwCommand("cable_check") in hw
    assert hw.index(HwCommand("contactor", "close")) < hw.index(HwCommand("contactor", "open"))
    assert published["evccid"] == "48C58DB1E43E"
    assert published["target_voltage"] == 380.0 and published["target_current"] == 0.0
    assert published["soc"] == 61.0 and published["battery_capacity"] == 78500.0
    # the session keeps the energies for v2g/session (SoC forwarders want them in Wh)
    assert (m.session.energy_request, m.session.full_soc, m.session.bulk_soc) == (17800.0, 100.0, 80.0)


@pytest.mark.parametrize("protocol", ["din", "iso2"])
def test_out_of_sequence_request_fails_with_sequence_error(protocol: str) -> None:
    m = machine(protocol)
    m.handle(req("00", "SessionSetupReq", {"EVCCID": "010203040506"}), ready_inputs(), NOW)
    step = m.handle(req(SID, "CableCheckReq", {"DC_EVStatus": ev_status()}), ready_inputs(), NOW)
    assert body(step)["ResponseCode"] == "FAILED_SequenceError"
    assert step.close and step.state is SeccState.SESSION_STOPPED
    assert "DC_EVSEStatus" in body(step) and body(step)["EVSEProcessing"] == "Finished"
    encodes(protocol, step.response or {})


@pytest.mark.parametrize("protocol", ["din", "iso2"])
def test_wrong_session_id_fails_with_unknown_session(protocol: str) -> None:
    m = machine(protocol)
    m.handle(req("00", "SessionSetupReq", {"EVCCID": "010203040506"}), ready_inputs(), NOW)
    step = m.handle(req("DEADBEEF00000000", "ServiceDiscoveryReq", {}), ready_inputs(), NOW)
    assert body(step)["ResponseCode"] == "FAILED_UnknownSession" and step.close
    encodes(protocol, step.response or {})


def test_second_session_setup_is_a_sequence_error() -> None:
    m = machine("din")
    m.handle(req("00", "SessionSetupReq", {"EVCCID": "010203040506"}), ready_inputs(), NOW)
    step = m.handle(req(SID, "SessionSetupReq", {"EVCCID": "010203040506"}), ready_inputs(), NOW)
    assert body(step)["ResponseCode"] == "FAILED_SequenceError"


def test_unsupported_message_closes_without_response() -> None:
    m = machine("din")
    step = m.handle(req("00", "CertificateInstallationReq", {}), ready_inputs(), NOW)
    assert step.response is None and step.close and step.error


def drive_to(m: SeccMachine, protocol: str, last: str, inputs: EvseInputs) -> None:
    sid = "00"
    for name, request_body in sequence(protocol):
        if name == last:
            return
        step = m.handle(req(sid, name, request_body), inputs, NOW)
        sid = SID
        if name == "CableCheckReq":
            step = m.handle(req(sid, name, request_body), inputs, NOW)
        assert body(step)["ResponseCode"].startswith("OK"), (name, body(step))
    raise AssertionError(f"{last} is not in the sequence")


@pytest.mark.parametrize("protocol", ["din", "iso2"])
def test_authorization_ongoing_until_authorised_then_times_out(protocol: str) -> None:
    auth = "ContractAuthenticationReq" if protocol == "din" else "AuthorizationReq"
    inputs = ready_inputs()
    inputs.authorized = False
    m = machine(protocol, ongoing_timeout=10.0)
    drive_to(m, protocol, auth, inputs)
    step = m.handle(req(SID, auth), inputs, NOW)
    assert body(step)["EVSEProcessing"] == "Ongoing" and step.state is SeccState.AUTHORIZATION_ONGOING
    inputs.authorized = True
    step = m.handle(req(SID, auth), inputs, NOW + 1)
    assert body(step)["EVSEProcessing"] == "Finished" and step.state is SeccState.AUTHORIZED

    inputs.authorized = False
    m2 = machine(protocol, ongoing_timeout=10.0)
    drive_to(m2, protocol, auth, inputs)
    m2.handle(req(SID, auth), inputs, NOW)
    step = m2.handle(req(SID, auth), inputs, NOW + 11)
    assert body(step)["ResponseCode"] == "FAILED" and step.close


@pytest.mark.parametrize("protocol", ["din", "iso2"])
def test_cable_check_waits_for_isolation_and_fails_on_fault(protocol: str) -> None:
    inputs = ready_inputs()
    m = machine(protocol)
    drive_to(m, protocol, "CableCheckReq", inputs)
    inputs.isolation = Isolation.UNKNOWN
    cc = req(SID, "CableCheckReq", {"DC_EVStatus": ev_status()})
    first = m.handle(cc, inputs, NOW)
    assert first.hw == [HwCommand("cable_check")] and body(first)["EVSEProcessing"] == "Ongoing"
    inputs.isolation = Isolation.ONGOING
    second = m.handle(cc, inputs, NOW + 1)
    assert second.hw == [] and body(second)["EVSEProcessing"] == "Ongoing"
    inputs.isolation = Isolation.FAULT
    third = m.handle(cc, inputs, NOW + 2)
    assert body(third)["ResponseCode"] == "FAILED" and third.close
    assert body(third)["DC_EVSEStatus"]["EVSEIsolationStatus"] == "Fault"


@pytest.mark.parametrize("protocol", ["din", "iso2"])
def test_user_stop_shows_in_current_demand(protocol: str) -> None:
    inputs = ready_inputs()
    m = machine(protocol)
    drive_to(m, protocol, "CurrentDemandReq", inputs)
    demand = dict(sequence(protocol))["CurrentDemandReq"]
    step = m.handle(req(SID, "CurrentDemandReq", demand), inputs, NOW)
    assert body(step)["DC_EVSEStatus"]["EVSEStatusCode"] == "EVSE_Ready"
    inputs.enabled = False
    step = m.handle(req(SID, "CurrentDemandReq", demand), inputs, NOW)
    status = body(step)["DC_EVSEStatus"]
    assert status["EVSEStatusCode"] == "EVSE_Shutdown" and status["EVSENotification"] == "StopCharging"
    assert body(step)["ResponseCode"] == "OK"  # the car ends the session itself


def test_current_demand_limits_achieved() -> None:
    inputs = ready_inputs()
    inputs.max_current = 50.0
    m = machine("din")
    drive_to(m, "din", "CurrentDemandReq", inputs)
    demand = dict(sequence("din"))["CurrentDemandReq"]
    demand = {**demand, "EVTargetCurrent": pv(0, "A", 80)}
    res = body(m.handle(req(SID, "CurrentDemandReq", demand), inputs, NOW))
    assert res["EVSECurrentLimitAchieved"] is True and res["EVSEVoltageLimitAchieved"] is False
    assert res["EVSEPresentVoltage"] == {"Multiplier": -1, "Unit": "V", "Value": 3700}


def test_din_power_delivery_start_before_precharge_is_refused() -> None:
    inputs = ready_inputs()
    m = machine("din")
    drive_to(m, "din", "PreChargeReq", inputs)
    step = m.handle(req(SID, "PowerDeliveryReq", {"ReadyToChargeState": True}), inputs, NOW)
    assert body(step)["ResponseCode"] == "FAILED_SequenceError"


def test_iso2_wrong_energy_mode_and_tariff() -> None:
    inputs = ready_inputs()
    m = machine("iso2")
    drive_to(m, "iso2", "ChargeParameterDiscoveryReq", inputs)
    ac = {"RequestedEnergyTransferMode": "AC_three_phase_core",
          "AC_EVChargeParameter": {"EAmount": pv(1, "Wh", 6400), "EVMaxVoltage": pv(0, "V", 400),
                                   "EVMaxCurrent": pv(0, "A", 32), "EVMinCurrent": pv(0, "A", 0)}}
    step = m.handle(req(SID, "ChargeParameterDiscoveryReq", ac), inputs, NOW)
    assert body(step)["ResponseCode"] == "FAILED_WrongEnergyTransferMode"
    encodes("iso2", step.response or {})


def test_iso2_ac_session_with_charging_status() -> None:
    inputs = ready_inputs()
    m = machine("iso2", energy_modes=("AC_three_phase_core", "DC_extended"))
    drive_to(m, "iso2", "ChargeParameterDiscoveryReq", inputs)
    ac = {"RequestedEnergyTransferMode": "AC_three_phase_core",
          "AC_EVChargeParameter": {"EAmount": pv(1, "Wh", 6400), "EVMaxVoltage": pv(0, "V", 400),
                                   "EVMaxCurrent": pv(0, "A", 32), "EVMinCurrent": pv(0, "A", 0)}}
    steps = [
        m.handle(req(SID, "ChargeParameterDiscoveryReq", ac), inputs, NOW),
        m.handle(req(SID, "PowerDeliveryReq", {"ChargeProgress": "Start", "SAScheduleTupleID": 1}),
                 inputs, NOW),
        m.handle(req(SID, "ChargingStatusReq"), inputs, NOW),
        m.handle(req(SID, "PowerDeliveryReq", {"ChargeProgress": "Stop", "SAScheduleTupleID": 1}),
                 inputs, NOW),
        m.handle(req(SID, "SessionStopReq", {"ChargingSession": "Terminate"}), inputs, NOW),
    ]
    for step in steps:
        assert body(step)["ResponseCode"] == "OK", body(step)
        encodes("iso2", step.response or {})
    assert "AC_EVSEChargeParameter" in body(steps[0]) and "AC_EVSEStatus" in body(steps[1])


def test_iso2_service_detail_and_pause_resume() -> None:
    inputs = ready_inputs()
    m = machine("iso2")
    drive_to(m, "iso2", "PaymentServiceSelectionReq", inputs)
    detail = m.handle(req(SID, "ServiceDetailReq", {"ServiceID": 1}), inputs, NOW)
    assert body(detail) == {"ResponseCode": "OK", "ServiceID": 1}
    encodes("iso2", detail.response or {})
    m.handle(req(SID, "PaymentServiceSelectionReq", dict(sequence("iso2"))[
        "PaymentServiceSelectionReq"]), inputs, NOW)
    stop = m.handle(req(SID, "SessionStopReq", {"ChargingSession": "Pause"}), inputs, NOW)
    assert stop.close and m.session.paused_session_id == SID
    again = SeccMachine("iso2", new_session_id=lambda: "FFFFFFFFFFFFFFFF",
                        paused_session_id=m.session.paused_session_id)
    step = again.handle(req(SID, "SessionSetupReq", {"EVCCID": "010203040506"}), inputs, NOW)
    assert body(step)["ResponseCode"] == "OK_OldSessionJoined"
    assert step.response is not None and step.response["V2G_Message"]["Header"]["SessionID"] == SID


# ---------------------------------------------------------------------------- fault injection
def current_demand_steps(protocol: str, count: int, injector: FaultInjector) -> list[FaultAction]:
    inputs = ready_inputs()
    m = machine(protocol)
    drive_to(m, protocol, "CurrentDemandReq", inputs)
    demand = dict(sequence(protocol))["CurrentDemandReq"]
    actions = []
    for _ in range(count):
        step = m.handle(req(SID, "CurrentDemandReq", demand), inputs, NOW)
        actions.append(injector.apply(step))
        if actions[-1] is FaultAction.MODIFY:
            assert body(step)["ResponseCode"] == "FAILED"
            encodes(protocol, step.response or {})
    return actions


def test_fault_after_n_fires_once() -> None:
    actions = current_demand_steps("din", 14, FaultInjector(parse_fault(9)))
    assert actions.index(FaultAction.MODIFY) == 10 and actions.count(FaultAction.MODIFY) == 1


def test_no_response_fault_stays_silent() -> None:
    actions = current_demand_steps("iso2", 33, FaultInjector(parse_fault("no_response_current_demand")))
    assert actions[:30] == [FaultAction.NONE] * 30
    assert actions[30:] == [FaultAction.NO_RESPONSE] * 3


def test_transport_faults_hit_the_sixth_current_demand() -> None:
    for name, action in [("tcp_reset", FaultAction.TCP_RESET), ("malformed_exi", FaultAction.MALFORMED_EXI),
                         ("bad_v2gtp_header", FaultAction.BAD_V2GTP_HEADER)]:
        actions = current_demand_steps("din", 7, FaultInjector(parse_fault(name)))
        assert actions[5] is action and actions[:5] == [FaultAction.NONE] * 5


def test_session_id_change_fault() -> None:
    inputs = ready_inputs()
    m = machine("din")
    drive_to(m, "din", "CurrentDemandReq", inputs)
    injector = FaultInjector(parse_fault(18))
    demand = dict(sequence("din"))["CurrentDemandReq"]
    for _ in range(6):
        step = m.handle(req(SID, "CurrentDemandReq", demand), inputs, NOW)
        injector.apply(step)
    assert step.response is not None
    assert step.response["V2G_Message"]["Header"]["SessionID"] != SID


def test_status_code_fault_and_parse() -> None:
    inputs = ready_inputs()
    m = machine("iso2")
    drive_to(m, "iso2", "CurrentDemandReq", inputs)
    injector = FaultInjector(parse_fault("14"))
    demand = dict(sequence("iso2"))["CurrentDemandReq"]
    codes = []
    for _ in range(7):
        step = m.handle(req(SID, "CurrentDemandReq", demand), inputs, NOW)
        injector.apply(step)
        codes.append(body(step)["DC_EVSEStatus"]["EVSEStatusCode"])
    assert codes == ["EVSE_Ready"] * 5 + ["EVSE_Malfunction", "EVSE_Ready"]
    assert parse_fault(0) is None and parse_fault("none") is None and parse_fault(16) is not None
    for bad in (21, "nope", True, 2.5):
        with pytest.raises(FaultError):
            parse_fault(bad)
