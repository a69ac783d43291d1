"""The EVCC state machine alone: whole DC sequences and every fault, per protocol, without sockets.

A small scripted charger answers each request tree; every request the machine builds is also
encoded with the real EXI codec (when built) so the trees are proven schema-valid.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ccsbus_v2g.evcc import (
    AwaitContactors,
    AwaitCurrentBelow,
    EvccMachine,
    EvccSettings,
    EvccState,
    EvccTimers,
    EvInputs,
    Finished,
    PublishCharger,
    SetCp,
    SetLock,
    SetRelay,
    Step,
)
from ccsbus_v2g.physical import from_float


def load_helpers() -> Any:
    name = "ccsbus_v2g_tests_evcc_helpers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("evcc_helpers.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

try:
    import ccsbus_exi
except ImportError:  # pragma: no cover - the codec is built by the exi-codec package
    ccsbus_exi = None

_helpers = load_helpers()
Charger = _helpers.Charger
SESSION = _helpers.SESSION
PROTOCOLS = _helpers.PROTOCOLS


def settings(**changes: Any) -> EvccSettings:
    return replace(EvccSettings(), **changes)


def run_session(machine: EvccMachine, charger: Any, inputs: EvInputs,
                tamper: Any = None, limit: int = 400) -> list[Step]:
    """Feed the machine until it ends; `tamper(step, response)` may alter or drop a response."""
    now = 0.0
    steps = [machine.start(inputs, now)]
    while steps[-1].request is not None and len(steps) < limit:
        step = steps[-1]
        if ccsbus_exi is not None:
            ccsbus_exi.encode(machine.protocol, step.request)
        now += step.delay + 0.01
        response = charger.answer(step.request)
        if ccsbus_exi is not None:
            ccsbus_exi.encode(machine.protocol, response)
        if tamper is not None:
            response = tamper(step, response, inputs)
        if response is None:
            now += step.timeout
            steps.append(machine.on_timeout(now))
        else:
            steps.append(machine.on_response(response, inputs, now))
    return steps


def actions(steps: list[Step]) -> list[Any]:
    return [a for s in steps for a in s.actions if not isinstance(a, PublishCharger)]


def hw_order(steps: list[Step]) -> list[Any]:
    return [a for a in actions(steps) if isinstance(a, SetCp | SetRelay | SetLock)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_good_session_runs_the_whole_dc_sequence(protocol: str) -> None:
    machine = EvccMachine(protocol, settings(max_charge_time=0.5), "0A0B0C0D0E0F", 0.0)
    charger = Charger(protocol)
    steps = run_session(machine, charger, EvInputs(battery_voltage=360, soc=40))
    final = steps[-1]
    assert machine.state is EvccState.FINISHED
    assert final.actions[-1] == Finished(True, "SessionStopRes", {"evseid": machine.evseid})
    names = [n for n in charger.received if n != "CableCheckReq" and n != "PreChargeReq"
             and n != "CurrentDemandReq"]
    pay = "ServicePaymentSelectionReq" if protocol == "din" else "PaymentServiceSelectionReq"
    auth = "ContractAuthenticationReq" if protocol == "din" else "AuthorizationReq"
    assert names == ["SessionSetupReq", "ServiceDiscoveryReq", pay, auth,
                     "ChargeParameterDiscoveryReq", "PowerDeliveryReq", "PowerDeliveryReq",
                     "WeldingDetectionReq", "SessionStopReq"]
    assert charger.received.count("CableCheckReq") == 2  # one Ongoing, then Finished
    assert charger.received.count("CurrentDemandReq") >= 3
    # hardware requests in the order the standard's sequence needs them
    assert hw_order(steps) == [SetLock("lock"), SetCp("C"), SetRelay("on"), SetCp("B"),
                               SetRelay("off"), SetLock("unlock")]
    seq = actions(steps)
    b = seq.index(SetCp("B"))
    assert isinstance(seq[b + 1], AwaitCurrentBelow)
    assert seq[b + 2] == SetRelay("off")
    assert isinstance(seq[b + 3], AwaitContactors)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_requests_carry_the_session_id_and_the_right_timers(protocol: str) -> None:
    machine = EvccMachine(protocol, settings(max_charge_time=0.3), "0A0B0C0D0E0F", 0.0)
    steps = run_session(machine, Charger(protocol), EvInputs(battery_voltage=360, soc=40))
    first = steps[0]
    assert first.request is not None
    assert first.request["V2G_Message"]["Header"]["SessionID"] == (
        "00" if protocol == "din" else "0000000000000000")
    assert first.request["V2G_Message"]["Body"]["SessionSetupReq"]["EVCCID"] == "0A0B0C0D0E0F"
    later = [s for s in steps[1:] if s.request is not None]
    assert all(s.request["V2G_Message"]["Header"]["SessionID"] == SESSION for s in later)
    demand = [s for s in later if s.name == "CurrentDemandReq"]
    assert demand and all(s.timeout == pytest.approx(0.25) for s in demand)
    assert all(s.timer == "V2G_EVCC_Msg_Timeout_CurrentDemand" for s in demand)
    delivery = [s for s in later if s.name == "PowerDeliveryReq"]
    expected = 5.0 if protocol == "iso2" else 2.0
    assert delivery[-1].timeout == pytest.approx(expected)
    pre = [s for s in later if s.name == "PreChargeReq"]
    assert pre and all(s.timeout <= 2.0 for s in pre)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_current_demand_carries_inputs_and_is_paced(protocol: str) -> None:
    s = settings(max_charge_time=1.0, current_demand_cycle=0.2)
    machine = EvccMachine(protocol, s, "0A0B0C0D0E0F", 0.0)
    inputs = EvInputs(battery_voltage=360, target_voltage=400, target_current=55, soc=40)
    steps = run_session(machine, Charger(protocol), inputs)
    demand = [st for st in steps if st.name == "CurrentDemandReq"]
    body = demand[1].request["V2G_Message"]["Body"]["CurrentDemandReq"]
    assert body["EVTargetCurrent"] == from_float(55, "A", protocol)
    assert body["EVTargetVoltage"] == from_float(400, "V", protocol)
    assert body["DC_EVStatus"]["EVRESSSOC"] == 40
    # the response comes 10 ms after sending: the next request waits out the rest of the cycle
    assert demand[1].delay == pytest.approx(0.19)
    published = [a for st in steps for a in st.actions if isinstance(a, PublishCharger)]
    merged: dict[str, float] = {}
    for p in published:
        merged.update(p.values)
    assert merged["charger_max_voltage"] == 500
    assert merged["charger_max_current"] == 200
    assert merged["charger_current"] == 20


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_relay_closes_only_once_precharge_matched_the_battery(protocol: str) -> None:
    machine = EvccMachine(protocol, settings(max_charge_time=0.2, precharge_delta=5),
                          "0A0B0C0D0E0F", 0.0)
    charger = Charger(protocol, precharge_steps=4)
    seen: list[tuple[float | None, bool]] = []

    def watch(step: Step, response: dict[str, Any], inputs: EvInputs) -> dict[str, Any]:
        if step.name == "PreChargeReq":
            res = response["V2G_Message"]["Body"]["PreChargeRes"]
            v = res["EVSEPresentVoltage"]
            seen.append((v["Value"] * 10.0 ** v["Multiplier"], machine.relay_on))
        return response

    steps = run_session(machine, charger, EvInputs(battery_voltage=380, soc=40), watch)
    assert machine.state is EvccState.FINISHED
    assert len(seen) >= 3
    assert not any(relay for _, relay in seen)  # never on while the voltage was still away
    on = next(i for i, st in enumerate(steps) if SetRelay("on") in st.actions)
    # the step that closes the relay answers the PreChargeRes within the delta
    assert steps[on].name == "PowerDeliveryReq"
    assert abs(seen[-1][0] - 380) < 5  # type: ignore[operator]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_inlet_measurement_gates_the_relay(protocol: str) -> None:
    """With precharge_voltage_source=inlet the charger's claim alone does not close the relay."""
    machine = EvccMachine(protocol, settings(precharge_voltage_source="inlet"), "0A0B0C0D0E0F", 0.0)
    inputs = EvInputs(battery_voltage=380, soc=40, inlet_voltage=0.0)
    steps = run_session(machine, Charger(protocol), inputs)
    assert machine.state is EvccState.SAFE_SHUTDOWN
    assert SetRelay("on") not in actions(steps)
    assert "V2G_EVCC_PreCharge_Timeout" in machine.finished.reason


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stop_at_target_soc(protocol: str) -> None:
    inputs = EvInputs(battery_voltage=360, soc=79)
    machine = EvccMachine(protocol, settings(stop_soc=80), "0A0B0C0D0E0F", 0.0)
    count = 0

    def raise_soc(step: Step, response: dict[str, Any], inp: EvInputs) -> dict[str, Any]:
        nonlocal count
        if step.name == "CurrentDemandReq":
            count += 1
            if count == 4:
                inp.soc = 80
        return response

    run_session(machine, Charger(protocol), inputs, raise_soc)
    assert machine.state is EvccState.FINISHED
    assert machine.current_demand_count == 4


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_user_stop_during_charging_ends_normally(protocol: str) -> None:
    inputs = EvInputs(battery_voltage=360, soc=40)
    machine = EvccMachine(protocol, settings(), "0A0B0C0D0E0F", 0.0)

    def stop(step: Step, response: dict[str, Any], inp: EvInputs) -> dict[str, Any]:
        if machine.current_demand_count == 5:
            inp.stop_requested = True
        return response

    steps = run_session(machine, Charger(protocol), inputs, stop)
    assert machine.state is EvccState.FINISHED
    stop_req = [st for st in steps if st.name == "PowerDeliveryReq"][-1]
    body = stop_req.request["V2G_Message"]["Body"]["PowerDeliveryReq"]
    if protocol == "din":
        assert body["ReadyToChargeState"] is False
    else:
        assert body["ChargeProgress"] == "Stop"
    assert body["DC_EVPowerDeliveryParameter"]["ChargingComplete"] is True


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_user_stop_before_charging_skips_to_session_stop(protocol: str) -> None:
    inputs = EvInputs(battery_voltage=360, soc=40, stop_requested=True)
    machine = EvccMachine(protocol, settings(), "0A0B0C0D0E0F", 0.0)
    charger = Charger(protocol)
    steps = run_session(machine, charger, inputs)
    assert charger.received == ["SessionSetupReq", "SessionStopReq"]
    assert machine.state is EvccState.FINISHED
    assert SetRelay("on") not in actions(steps)


def fault(after_name: str, change: Any, nth: int = 1) -> Any:
    seen = 0

    def tamper(step: Step, response: dict[str, Any], inputs: EvInputs) -> Any:
        nonlocal seen
        if step.name == after_name:
            seen += 1
            if seen == nth:
                if change is None:
                    return None
                body = next(iter(response["V2G_Message"]["Body"].values()))
                change(body, response)
        return response

    return tamper


def code(value: str) -> Any:
    return lambda body, _: body.__setitem__("ResponseCode", value)


def status(value: str) -> Any:
    return lambda body, _: body["DC_EVSEStatus"].__setitem__("EVSEStatusCode", value)


FAULTS = {
    "session_setup_failed": ("SessionSetupReq", code("FAILED_SequenceError"), 1),
    "cable_check_failed": ("CableCheckReq", code("FAILED"), 1),
    "service_discovery_failed": ("ServiceDiscoveryReq", code("FAILED_SequenceError"), 1),
    "authorization_failed": ("AUTH", code("FAILED_SequenceError"), 1),
    "payment_failed": ("PAY", code("FAILED_SequenceError"), 1),
    "charge_parameter_failed": ("ChargeParameterDiscoveryReq",
                                code("FAILED_ServiceSelectionInvalid"), 1),
    "precharge_failed": ("PreChargeReq", code("FAILED"), 2),
    "power_delivery_failed": ("PowerDeliveryReq", code("FAILED"), 1),
    "current_demand_failed": ("CurrentDemandReq", code("FAILED"), 10),
    "cable_check_silent": ("CableCheckReq", None, 1),
    "precharge_silent": ("PreChargeReq", None, 1),
    "precharge_shutdown": ("PreChargeReq", status("EVSE_Shutdown"), 2),
    "current_demand_shutdown": ("CurrentDemandReq", status("EVSE_Shutdown"), 20),
    "current_demand_malfunction": ("CurrentDemandReq", status("EVSE_Malfunction"), 5),
    "current_demand_emergency": ("CurrentDemandReq", status("EVSE_EmergencyShutdown"), 3),
    "current_demand_silent": ("CurrentDemandReq", None, 30),
    "session_id_change": ("ServiceDiscoveryReq",
                          lambda b, r: r["V2G_Message"]["Header"].__setitem__(
                              "SessionID", "FFFFFFFFFFFFFFFF"), 1),
    "wrong_message": ("CableCheckReq",
                      lambda b, r: r["V2G_Message"].__setitem__(
                          "Body", {"SessionStopRes": {"ResponseCode": "OK"}}), 1),
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", sorted(FAULTS))
def test_charger_faults_end_in_the_safe_shutdown_order(protocol: str, case: str) -> None:
    name, change, nth = FAULTS[case]
    name = {"AUTH": "ContractAuthenticationReq" if protocol == "din" else "AuthorizationReq",
            "PAY": "ServicePaymentSelectionReq" if protocol == "din"
            else "PaymentServiceSelectionReq"}.get(name, name)
    machine = EvccMachine(protocol, settings(max_charge_time=60), "0A0B0C0D0E0F", 0.0)
    steps = run_session(machine, Charger(protocol), EvInputs(battery_voltage=360, soc=40),
                        fault(name, change, nth))
    assert machine.state is EvccState.SAFE_SHUTDOWN
    final = steps[-1]
    assert final.request is None
    done = final.actions[-1]
    assert isinstance(done, Finished) and not done.ok
    tail = [a for a in final.actions if not isinstance(a, Finished)]
    assert [type(a) for a in tail] == [SetCp, AwaitCurrentBelow, SetRelay, AwaitContactors, SetLock]
    assert tail[0] == SetCp("B") and tail[2] == SetRelay("off") and tail[4] == SetLock("unlock")
    if change is None:
        expected_timer = ("V2G_EVCC_Msg_Timeout_CurrentDemand" if name == "CurrentDemandReq"
                          else "V2G_EVCC_Msg_Timeout")
        assert done.reason.startswith(expected_timer)
    elif case == "session_id_change":
        assert "SessionID changed" in done.reason
    elif case == "wrong_message":
        assert "unexpected SessionStopRes" in done.reason


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cable_check_timeout_bounds_an_endless_ongoing(protocol: str) -> None:
    timers = replace(EvccTimers(), V2G_EVCC_CableCheck_Timeout=0.5)
    machine = EvccMachine(protocol, settings(timers=timers), "0A0B0C0D0E0F", 0.0)
    charger = Charger(protocol, cable_check_ongoing=10_000)
    run_session(machine, charger, EvInputs(battery_voltage=360, soc=40))
    assert machine.state is EvccState.SAFE_SHUTDOWN
    assert "V2G_EVCC_CableCheck_Timeout" in machine.finished.reason
    # repetitions every ongoing_repeat_delay (+10 ms answer) within 0.5 s
    assert 5 <= charger.received.count("CableCheckReq") <= 12


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_communication_setup_timeout_bounds_session_setup(protocol: str) -> None:
    timers = replace(EvccTimers(), V2G_EVCC_CommunicationSetup_Timeout=0.3)
    machine = EvccMachine(protocol, settings(timers=timers), "0A0B0C0D0E0F", 0.0)
    step = machine.start(EvInputs(), now=0.1)
    assert step.timer == "V2G_EVCC_CommunicationSetup_Timeout"
    assert step.timeout == pytest.approx(0.2)
    end = machine.on_timeout(0.3)
    assert end.state is EvccState.SAFE_SHUTDOWN
    assert "V2G_EVCC_CommunicationSetup_Timeout" in machine.finished.reason


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_connection_loss_mid_loop_shuts_down_once(protocol: str) -> None:
    machine = EvccMachine(protocol, settings(), "0A0B0C0D0E0F", 0.0)
    step = machine.start(EvInputs(), 0.0)
    assert step.request is not None
    end = machine.on_error("connection reset by the charger", 0.5)
    assert end.state is EvccState.SAFE_SHUTDOWN
    again = machine.on_error("second report", 0.6)
    assert again.actions == []  # the sequence runs once


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown protocol"):
        EvccMachine("iso20", settings(), "0A0B0C0D0E0F", 0.0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_charger_stop_notification_ends_charging_normally(protocol: str) -> None:
    machine = EvccMachine(protocol, settings(), "0A0B0C0D0E0F", 0.0)

    def notify(step: Step, response: dict[str, Any], inputs: EvInputs) -> dict[str, Any]:
        if step.name == "CurrentDemandReq" and machine.current_demand_count == 3:
            body = response["V2G_Message"]["Body"]["CurrentDemandRes"]
            body["DC_EVSEStatus"]["EVSENotification"] = "StopCharging"
        return response

    run_session(machine, Charger(protocol), EvInputs(battery_voltage=360, soc=40), notify)
    assert machine.state is EvccState.FINISHED
    assert machine.current_demand_count == 4


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_endless_authorization_ongoing_hits_the_ongoing_timeout(protocol: str) -> None:
    timers = replace(EvccTimers(), V2G_EVCC_Ongoing_Timeout=0.4)
    machine = EvccMachine(protocol, settings(timers=timers), "0A0B0C0D0E0F", 0.0)
    auth = "ContractAuthenticationReq" if protocol == "din" else "AuthorizationReq"

    def ongoing(step: Step, response: dict[str, Any], inputs: EvInputs) -> dict[str, Any]:
        if step.name == auth:
            next(iter(response["V2G_Message"]["Body"].values()))["EVSEProcessing"] = "Ongoing"
        return response

    run_session(machine, Charger(protocol), EvInputs(battery_voltage=360, soc=40), ongoing)
    assert machine.state is EvccState.SAFE_SHUTDOWN
    assert "V2G_EVCC_Ongoing_Timeout" in machine.finished.reason


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_charger_without_dc_is_refused(protocol: str) -> None:
    machine = EvccMachine(protocol, settings(), "0A0B0C0D0E0F", 0.0)

    def ac_only(step: Step, response: dict[str, Any], inputs: EvInputs) -> dict[str, Any]:
        if step.name == "ServiceDiscoveryReq":
            service = response["V2G_Message"]["Body"]["ServiceDiscoveryRes"]["ChargeService"]
            if protocol == "din":
                service["EnergyTransferType"] = "AC_single_phase_core"
            else:
                service["SupportedEnergyTransferMode"]["EnergyTransferMode"] = [
                    "AC_three_phase_core"]
        return response

    run_session(machine, Charger(protocol), EvInputs(battery_voltage=360, soc=40), ac_only)
    assert machine.state is EvccState.SAFE_SHUTDOWN
    assert machine.finished.reason == "charger offers no DC energy transfer mode"
