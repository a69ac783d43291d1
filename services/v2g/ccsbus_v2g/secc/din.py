"""DIN 70121 SECC (DC, external identification): one handler per request, one table of states.

`TRANSITIONS[state]` lists the requests a state accepts; anything else is answered with
FAILED_SequenceError and ends the session. `RESPONSES` names the response of each request and the
builder that fills its mandatory fields for any ResponseCode.
"""

from __future__ import annotations

from typing import Any

from . import common as c
from .common import OK, Ctx
from .model import SeccState, Step

SCHEMA = "din"


# ---------------------------------------------------------------------------- builders
def res_session_setup(ctx: Ctx, code: str) -> dict[str, Any]:
    return {"ResponseCode": code, "EVSEID": ctx.config.evse_id_din, "DateTimeNow": int(ctx.now)}


def res_service_discovery(ctx: Ctx, code: str) -> dict[str, Any]:
    return {
        "ResponseCode": code,
        "PaymentOptions": {"PaymentOption": ["ExternalPayment"]},
        "ChargeService": {
            "ServiceTag": {"ServiceID": 1, "ServiceCategory": "EVCharging"},
            "FreeService": False,
            "EnergyTransferType": "DC_extended",
        },
    }


def res_code_only(ctx: Ctx, code: str) -> dict[str, Any]:
    return {"ResponseCode": code}


def res_contract_authentication(ctx: Ctx, code: str, processing: str = "Finished") -> dict[str, Any]:
    return {"ResponseCode": code, "EVSEProcessing": processing}


def res_charge_parameter_discovery(ctx: Ctx, code: str) -> dict[str, Any]:
    pmax = min(32767, int(ctx.inputs.max_power / 10))  # PMaxType: short, in units of 10 W
    return {
        "ResponseCode": code,
        "EVSEProcessing": "Finished",
        "SAScheduleList": {"SAScheduleTuple": [{
            "SAScheduleTupleID": ctx.session.sa_schedule_tuple_id,
            "PMaxSchedule": {"PMaxScheduleID": 1, "PMaxScheduleEntry": [
                {"RelativeTimeInterval": {"start": 0, "duration": 86400}, "PMax": pmax}]},
        }]},
        "DC_EVSEChargeParameter": c.dc_charge_parameter(ctx),
    }


def res_power_delivery(ctx: Ctx, code: str) -> dict[str, Any]:
    return {"ResponseCode": code, "DC_EVSEStatus": c.dc_status(ctx)}


RESPONSES: dict[str, tuple[str, c.Builder]] = {
    "SessionSetupReq": ("SessionSetupRes", res_session_setup),
    "ServiceDiscoveryReq": ("ServiceDiscoveryRes", res_service_discovery),
    "ServicePaymentSelectionReq": ("ServicePaymentSelectionRes", res_code_only),
    "ContractAuthenticationReq": ("ContractAuthenticationRes", res_contract_authentication),
    "ChargeParameterDiscoveryReq": ("ChargeParameterDiscoveryRes", res_charge_parameter_discovery),
    "CableCheckReq": ("CableCheckRes", c.res_cable_check),
    "PreChargeReq": ("PreChargeRes", c.res_pre_charge),
    "PowerDeliveryReq": ("PowerDeliveryRes", res_power_delivery),
    "CurrentDemandReq": ("CurrentDemandRes", c.res_current_demand),
    "WeldingDetectionReq": ("WeldingDetectionRes", c.res_welding_detection),
    "SessionStopReq": ("SessionStopRes", res_code_only),
}


# ---------------------------------------------------------------------------- handlers
def on_session_setup(ctx: Ctx, body: dict[str, Any]) -> Step:
    ctx.session.session_id = ctx.new_session_id()
    ctx.session.evccid = str(body.get("EVCCID", "")).upper() or None
    publish = {"evccid": ctx.session.evccid} if ctx.session.evccid else {}
    return c.step(ctx, "SessionSetupReq", "SessionSetupRes",
                  res_session_setup(ctx, "OK_NewSessionEstablished"), SeccState.SESSION_SETUP,
                  publish=publish)


def on_service_discovery(ctx: Ctx, body: dict[str, Any]) -> Step:
    category = body.get("ServiceCategory")
    code = OK if category in (None, "EVCharging") else "FAILED_ServiceSelectionInvalid"
    return c.step(ctx, "ServiceDiscoveryReq", "ServiceDiscoveryRes",
                  res_service_discovery(ctx, code), SeccState.SERVICE_DISCOVERY)


def on_service_payment_selection(ctx: Ctx, body: dict[str, Any]) -> Step:
    code = OK
    if body.get("SelectedPaymentOption") != "ExternalPayment":
        code = "FAILED_PaymentSelectionInvalid"
    services = (body.get("SelectedServiceList") or {}).get("SelectedService") or []
    if isinstance(services, dict):
        services = [services]
    if not any(s.get("ServiceID") == 1 for s in services if isinstance(s, dict)):
        code = "FAILED_ServiceSelectionInvalid"
    return c.step(ctx, "ServicePaymentSelectionReq", "ServicePaymentSelectionRes",
                  res_code_only(ctx, code), SeccState.PAYMENT_SELECTION)


def on_contract_authentication(ctx: Ctx, body: dict[str, Any]) -> Step:
    name = "ContractAuthenticationRes"
    if ctx.inputs.authorized:
        ctx.session.ongoing_since = None
        return c.step(ctx, "ContractAuthenticationReq", name,
                      res_contract_authentication(ctx, OK), SeccState.AUTHORIZED)
    if c.ongoing_expired(ctx):
        return c.step(ctx, "ContractAuthenticationReq", name,
                      res_contract_authentication(ctx, "FAILED"), SeccState.SESSION_STOPPED,
                      error="not authorised in time")
    return c.step(ctx, "ContractAuthenticationReq", name,
                  res_contract_authentication(ctx, OK, "Ongoing"), SeccState.AUTHORIZATION_ONGOING)


def on_charge_parameter_discovery(ctx: Ctx, body: dict[str, Any]) -> Step:
    mode = body.get("EVRequestedEnergyTransferType")
    dc = body.get("DC_EVChargeParameter")
    name = "ChargeParameterDiscoveryRes"
    if mode not in ctx.config.energy_modes or not isinstance(dc, dict):
        return c.step(ctx, "ChargeParameterDiscoveryReq", name,
                      res_charge_parameter_discovery(ctx, "FAILED_WrongEnergyTransferType"),
                      SeccState.SESSION_STOPPED)
    ctx.session.energy_mode = str(mode)
    publish = c.charge_parameters(ctx, dc)
    return c.step(ctx, "ChargeParameterDiscoveryReq", name,
                  res_charge_parameter_discovery(ctx, OK), SeccState.CHARGE_PARAMETER_DISCOVERY,
                  publish=publish)


def on_power_delivery(ctx: Ctx, body: dict[str, Any]) -> Step:
    start = bool(body.get("ReadyToChargeState"))
    if start and ctx.state not in (SeccState.PRECHARGE, SeccState.CHARGING):
        return c.step(ctx, "PowerDeliveryReq", "PowerDeliveryRes",
                      res_power_delivery(ctx, c.FAILED_SEQUENCE), SeccState.SESSION_STOPPED)
    effects = c.power_delivery_effects(ctx, start)
    state = SeccState.CHARGING if start else SeccState.POWER_DELIVERY_STOPPED
    return c.step(ctx, "PowerDeliveryReq", "PowerDeliveryRes", res_power_delivery(ctx, OK), state,
                  **effects)


def on_current_demand(ctx: Ctx, body: dict[str, Any]) -> Step:
    return c.on_current_demand(ctx, body, {})


def on_session_stop(ctx: Ctx, body: dict[str, Any]) -> Step:
    effects = c.power_delivery_effects(ctx, False) if ctx.inputs.contactors != "open" else {}
    effects.pop("wait_contactors", None)
    return c.step(ctx, "SessionStopReq", "SessionStopRes", res_code_only(ctx, OK),
                  SeccState.SESSION_STOPPED, close=True, **effects)


HANDLERS: dict[str, c.Handler] = {
    "SessionSetupReq": on_session_setup,
    "ServiceDiscoveryReq": on_service_discovery,
    "ServicePaymentSelectionReq": on_service_payment_selection,
    "ContractAuthenticationReq": on_contract_authentication,
    "ChargeParameterDiscoveryReq": on_charge_parameter_discovery,
    "CableCheckReq": c.on_cable_check,
    "PreChargeReq": c.on_pre_charge,
    "PowerDeliveryReq": on_power_delivery,
    "CurrentDemandReq": on_current_demand,
    "WeldingDetectionReq": c.on_welding_detection,
    "SessionStopReq": on_session_stop,
}

S = SeccState
TRANSITIONS: dict[SeccState, frozenset[str]] = {
    S.WAIT_SESSION_SETUP: frozenset({"SessionSetupReq"}),
    S.SESSION_SETUP: frozenset({"ServiceDiscoveryReq"}),
    S.SERVICE_DISCOVERY: frozenset({"ServicePaymentSelectionReq"}),
    S.PAYMENT_SELECTION: frozenset({"ContractAuthenticationReq"}),
    S.AUTHORIZATION_ONGOING: frozenset({"ContractAuthenticationReq"}),
    S.AUTHORIZED: frozenset({"ChargeParameterDiscoveryReq"}),
    S.CHARGE_PARAMETER_DISCOVERY: frozenset({"ChargeParameterDiscoveryReq", "CableCheckReq"}),
    S.CABLE_CHECK_ONGOING: frozenset({"CableCheckReq"}),
    S.CABLE_CHECK_DONE: frozenset({"CableCheckReq", "PreChargeReq"}),
    S.PRECHARGE: frozenset({"PreChargeReq", "PowerDeliveryReq"}),
    S.CHARGING: frozenset({"CurrentDemandReq", "PowerDeliveryReq"}),
    S.POWER_DELIVERY_STOPPED: frozenset({"WeldingDetectionReq", "SessionStopReq"}),
    S.WELDING_DETECTION: frozenset({"WeldingDetectionReq", "SessionStopReq"}),
    S.SESSION_STOPPED: frozenset(),
}
# every state may end the session: a car that gives up sends SessionStopReq from anywhere after setup
for _state in TRANSITIONS:
    if _state not in (S.WAIT_SESSION_SETUP, S.SESSION_STOPPED):
        TRANSITIONS[_state] = TRANSITIONS[_state] | {"SessionStopReq"}
