"""ISO 15118-2 SECC (EIM; DC, plus AC for cars that ask for it): handlers and the state table.

Like din.py: `TRANSITIONS[state]` lists the requests a state accepts; anything else is answered
with FAILED_SequenceError and ends the session. ISO-2 adds ServiceDetail, ChargingStatus (AC) and
SessionStop with Pause, whose SessionID a later SessionSetupReq may resume.
"""

from __future__ import annotations

from typing import Any

from . import common as c
from .common import OK, Ctx
from .model import SeccState, Step

SCHEMA = "iso2"
AC_MODES = frozenset({"AC_single_phase_core", "AC_three_phase_core"})


# ---------------------------------------------------------------------------- builders
def res_session_setup(ctx: Ctx, code: str) -> dict[str, Any]:
    return {"ResponseCode": code, "EVSEID": ctx.config.evse_id_iso2, "EVSETimeStamp": int(ctx.now)}


def res_service_discovery(ctx: Ctx, code: str) -> dict[str, Any]:
    return {
        "ResponseCode": code,
        "PaymentOptionList": {"PaymentOption": ["ExternalPayment"]},
        "ChargeService": {
            "ServiceID": 1,
            "ServiceCategory": "EVCharging",
            "FreeService": False,
            "SupportedEnergyTransferMode": {"EnergyTransferMode": list(ctx.config.energy_modes)},
        },
    }


def res_service_detail(ctx: Ctx, code: str) -> dict[str, Any]:
    return {"ResponseCode": code, "ServiceID": 1}


def res_code_only(ctx: Ctx, code: str) -> dict[str, Any]:
    return {"ResponseCode": code}


def res_authorization(ctx: Ctx, code: str, processing: str = "Finished") -> dict[str, Any]:
    return {"ResponseCode": code, "EVSEProcessing": processing}


def ac_status(ctx: Ctx) -> dict[str, Any]:
    stop = c.stop_requested(ctx)
    return {"NotificationMaxDelay": 0, "EVSENotification": "StopCharging" if stop else "None",
            "RCD": False}


def _is_ac(ctx: Ctx) -> bool:
    return ctx.session.energy_mode in AC_MODES


def res_charge_parameter_discovery(ctx: Ctx, code: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ResponseCode": code,
        "EVSEProcessing": "Finished",
        "SAScheduleList": {"SAScheduleTuple": [{
            "SAScheduleTupleID": ctx.session.sa_schedule_tuple_id,
            "PMaxSchedule": {"PMaxScheduleEntry": [{
                "RelativeTimeInterval": {"start": 0, "duration": 86400},
                "PMax": c.pv(ctx, ctx.inputs.max_power, "W")}]},
        }]},
    }
    if _is_ac(ctx):
        body["AC_EVSEChargeParameter"] = {
            "AC_EVSEStatus": ac_status(ctx),
            "EVSENominalVoltage": c.pv(ctx, 230.0, "V"),
            "EVSEMaxCurrent": c.pv(ctx, ctx.inputs.max_current, "A"),
        }
    else:
        body["DC_EVSEChargeParameter"] = c.dc_charge_parameter(ctx)
    return body


def res_power_delivery(ctx: Ctx, code: str) -> dict[str, Any]:
    if _is_ac(ctx):
        return {"ResponseCode": code, "AC_EVSEStatus": ac_status(ctx)}
    return {"ResponseCode": code, "DC_EVSEStatus": c.dc_status(ctx)}


def res_current_demand(ctx: Ctx, code: str) -> dict[str, Any]:
    body = c.res_current_demand(ctx, code)
    body.update(EVSEID=ctx.config.evse_id_iso2, SAScheduleTupleID=ctx.session.sa_schedule_tuple_id)
    return body


def res_charging_status(ctx: Ctx, code: str) -> dict[str, Any]:
    return {
        "ResponseCode": code,
        "EVSEID": ctx.config.evse_id_iso2,
        "SAScheduleTupleID": ctx.session.sa_schedule_tuple_id,
        "EVSEMaxCurrent": c.pv(ctx, ctx.inputs.max_current, "A"),
        "AC_EVSEStatus": ac_status(ctx),
    }


RESPONSES: dict[str, tuple[str, c.Builder]] = {
    "SessionSetupReq": ("SessionSetupRes", res_session_setup),
    "ServiceDiscoveryReq": ("ServiceDiscoveryRes", res_service_discovery),
    "ServiceDetailReq": ("ServiceDetailRes", res_service_detail),
    "PaymentServiceSelectionReq": ("PaymentServiceSelectionRes", res_code_only),
    "AuthorizationReq": ("AuthorizationRes", res_authorization),
    "ChargeParameterDiscoveryReq": ("ChargeParameterDiscoveryRes", res_charge_parameter_discovery),
    "CableCheckReq": ("CableCheckRes", c.res_cable_check),
    "PreChargeReq": ("PreChargeRes", c.res_pre_charge),
    "PowerDeliveryReq": ("PowerDeliveryRes", res_power_delivery),
    "CurrentDemandReq": ("CurrentDemandRes", res_current_demand),
    "ChargingStatusReq": ("ChargingStatusRes", res_charging_status),
    "WeldingDetectionReq": ("WeldingDetectionRes", c.res_welding_detection),
    "SessionStopReq": ("SessionStopRes", res_code_only),
}


# ---------------------------------------------------------------------------- handlers
def on_session_setup(ctx: Ctx, body: dict[str, Any]) -> Step:
    code = "OK_NewSessionEstablished"
    paused = ctx.session.paused_session_id
    if paused and ctx.session.session_id == paused:
        code = "OK_OldSessionJoined"  # the machine put the car's header SessionID here
    else:
        ctx.session.session_id = ctx.new_session_id()
    ctx.session.evccid = str(body.get("EVCCID", "")).upper() or None
    publish = {"evccid": ctx.session.evccid} if ctx.session.evccid else {}
    return c.step(ctx, "SessionSetupReq", "SessionSetupRes", res_session_setup(ctx, code),
                  SeccState.SESSION_SETUP, publish=publish)


def on_service_discovery(ctx: Ctx, body: dict[str, Any]) -> Step:
    category = body.get("ServiceCategory")
    code = OK if category in (None, "EVCharging") else "FAILED_ServiceSelectionInvalid"
    return c.step(ctx, "ServiceDiscoveryReq", "ServiceDiscoveryRes",
                  res_service_discovery(ctx, code), SeccState.SERVICE_DISCOVERY)


def on_service_detail(ctx: Ctx, body: dict[str, Any]) -> Step:
    code = OK if body.get("ServiceID") == 1 else "FAILED_ServiceIDInvalid"
    res = res_service_detail(ctx, code)
    if isinstance(body.get("ServiceID"), int):
        res["ServiceID"] = body["ServiceID"]
    return c.step(ctx, "ServiceDetailReq", "ServiceDetailRes", res, SeccState.SERVICE_DETAIL)


def on_payment_service_selection(ctx: Ctx, body: dict[str, Any]) -> Step:
    code = OK
    if body.get("SelectedPaymentOption") != "ExternalPayment":
        code = "FAILED_PaymentSelectionInvalid"
    services = (body.get("SelectedServiceList") or {}).get("SelectedService") or []
    if isinstance(services, dict):
        services = [services]
    if not any(s.get("ServiceID") == 1 for s in services if isinstance(s, dict)):
        code = "FAILED_NoChargeServiceSelected"
    return c.step(ctx, "PaymentServiceSelectionReq", "PaymentServiceSelectionRes",
                  res_code_only(ctx, code), SeccState.PAYMENT_SELECTION)


def on_authorization(ctx: Ctx, body: dict[str, Any]) -> Step:
    if ctx.inputs.authorized:
        ctx.session.ongoing_since = None
        return c.step(ctx, "AuthorizationReq", "AuthorizationRes", res_authorization(ctx, OK),
                      SeccState.AUTHORIZED)
    if c.ongoing_expired(ctx):
        return c.step(ctx, "AuthorizationReq", "AuthorizationRes",
                      res_authorization(ctx, "FAILED"), SeccState.SESSION_STOPPED,
                      error="not authorised in time")
    return c.step(ctx, "AuthorizationReq", "AuthorizationRes",
                  res_authorization(ctx, OK, "Ongoing"), SeccState.AUTHORIZATION_ONGOING)


def on_charge_parameter_discovery(ctx: Ctx, body: dict[str, Any]) -> Step:
    mode = body.get("RequestedEnergyTransferMode")
    name = "ChargeParameterDiscoveryRes"
    params = body.get("AC_EVChargeParameter" if mode in AC_MODES else "DC_EVChargeParameter")
    if mode not in ctx.config.energy_modes or not isinstance(params, dict):
        return c.step(ctx, "ChargeParameterDiscoveryReq", name,
                      res_charge_parameter_discovery(ctx, "FAILED_WrongEnergyTransferMode"),
                      SeccState.SESSION_STOPPED)
    ctx.session.energy_mode = str(mode)
    publish = {} if _is_ac(ctx) else c.charge_parameters(ctx, params)
    if _is_ac(ctx):
        energy = c.read_pv(params, "EAmount")
        if energy is not None:
            publish["battery_capacity"] = energy
    return c.step(ctx, "ChargeParameterDiscoveryReq", name,
                  res_charge_parameter_discovery(ctx, OK), SeccState.CHARGE_PARAMETER_DISCOVERY,
                  publish=publish)


def on_power_delivery(ctx: Ctx, body: dict[str, Any]) -> Step:
    progress = body.get("ChargeProgress")
    name = "PowerDeliveryRes"
    if body.get("SAScheduleTupleID") != ctx.session.sa_schedule_tuple_id:
        return c.step(ctx, "PowerDeliveryReq", name,
                      res_power_delivery(ctx, "FAILED_TariffSelectionInvalid"),
                      SeccState.SESSION_STOPPED)
    if progress == "Renegotiate":
        return c.step(ctx, "PowerDeliveryReq", name, res_power_delivery(ctx, OK),
                      SeccState.AUTHORIZED)
    start = progress == "Start"
    ready = SeccState.CHARGE_PARAMETER_DISCOVERY if _is_ac(ctx) else SeccState.PRECHARGE
    if start and ctx.state not in (ready, SeccState.CHARGING):
        return c.step(ctx, "PowerDeliveryReq", name, res_power_delivery(ctx, c.FAILED_SEQUENCE),
                      SeccState.SESSION_STOPPED)
    effects = c.power_delivery_effects(ctx, start)
    state = SeccState.CHARGING if start else SeccState.POWER_DELIVERY_STOPPED
    return c.step(ctx, "PowerDeliveryReq", name, res_power_delivery(ctx, OK), state, **effects)


def on_current_demand(ctx: Ctx, body: dict[str, Any]) -> Step:
    return c.on_current_demand(ctx, body, {"EVSEID": ctx.config.evse_id_iso2,
                                           "SAScheduleTupleID": ctx.session.sa_schedule_tuple_id})


def on_charging_status(ctx: Ctx, body: dict[str, Any]) -> Step:
    return c.step(ctx, "ChargingStatusReq", "ChargingStatusRes", res_charging_status(ctx, OK),
                  SeccState.CHARGING)


def on_session_stop(ctx: Ctx, body: dict[str, Any]) -> Step:
    if body.get("ChargingSession") == "Pause":
        ctx.session.paused_session_id = ctx.session.session_id
    else:
        ctx.session.paused_session_id = None
    effects = c.power_delivery_effects(ctx, False) if ctx.inputs.contactors != "open" else {}
    effects.pop("wait_contactors", None)
    return c.step(ctx, "SessionStopReq", "SessionStopRes", res_code_only(ctx, OK),
                  SeccState.SESSION_STOPPED, close=True, **effects)


HANDLERS: dict[str, c.Handler] = {
    "SessionSetupReq": on_session_setup,
    "ServiceDiscoveryReq": on_service_discovery,
    "ServiceDetailReq": on_service_detail,
    "PaymentServiceSelectionReq": on_payment_service_selection,
    "AuthorizationReq": on_authorization,
    "ChargeParameterDiscoveryReq": on_charge_parameter_discovery,
    "CableCheckReq": c.on_cable_check,
    "PreChargeReq": c.on_pre_charge,
    "PowerDeliveryReq": on_power_delivery,
    "CurrentDemandReq": on_current_demand,
    "ChargingStatusReq": on_charging_status,
    "WeldingDetectionReq": c.on_welding_detection,
    "SessionStopReq": on_session_stop,
}

S = SeccState
TRANSITIONS: dict[SeccState, frozenset[str]] = {
    S.WAIT_SESSION_SETUP: frozenset({"SessionSetupReq"}),
    S.SESSION_SETUP: frozenset({"ServiceDiscoveryReq"}),
    S.SERVICE_DISCOVERY: frozenset({"ServiceDetailReq", "PaymentServiceSelectionReq"}),
    S.SERVICE_DETAIL: frozenset({"ServiceDetailReq", "PaymentServiceSelectionReq"}),
    S.PAYMENT_SELECTION: frozenset({"AuthorizationReq"}),
    S.AUTHORIZATION_ONGOING: frozenset({"AuthorizationReq"}),
    S.AUTHORIZED: frozenset({"ChargeParameterDiscoveryReq"}),
    # AC goes from here straight to PowerDelivery; DC first checks the cable
    S.CHARGE_PARAMETER_DISCOVERY: frozenset(
        {"ChargeParameterDiscoveryReq", "CableCheckReq", "PowerDeliveryReq"}),
    S.CABLE_CHECK_ONGOING: frozenset({"CableCheckReq"}),
    S.CABLE_CHECK_DONE: frozenset({"CableCheckReq", "PreChargeReq"}),
    S.PRECHARGE: frozenset({"PreChargeReq", "PowerDeliveryReq"}),
    S.CHARGING: frozenset({"CurrentDemandReq", "ChargingStatusReq", "PowerDeliveryReq"}),
    S.POWER_DELIVERY_STOPPED: frozenset(
        {"WeldingDetectionReq", "SessionStopReq", "ChargeParameterDiscoveryReq"}),
    S.WELDING_DETECTION: frozenset({"WeldingDetectionReq", "SessionStopReq"}),
    S.SESSION_STOPPED: frozenset(),
}
for _state in TRANSITIONS:
    if _state not in (S.WAIT_SESSION_SETUP, S.SESSION_STOPPED):
        TRANSITIONS[_state] = TRANSITIONS[_state] | {"SessionStopReq"}
