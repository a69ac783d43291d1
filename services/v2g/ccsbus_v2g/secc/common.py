"""Pieces both protocols' SECC tables share: the handler context, status blocks, the DC handlers.

DIN 70121 and ISO 15118-2 DC messages have the same shape for CableCheck, PreCharge,
CurrentDemand and WeldingDetection; they differ in the session-level messages, which live in
din.py and iso2.py. Every builder takes the ResponseCode, so a FAILED answer still carries all
the mandatory fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..physical import PhysicalValueError, from_float, to_float
from .model import EvseInputs, HwCommand, Isolation, SeccConfig, SeccState, SessionData, Step, Tree

OK = "OK"
FAILED = "FAILED"
FAILED_SEQUENCE = "FAILED_SequenceError"
FAILED_UNKNOWN_SESSION = "FAILED_UnknownSession"


@dataclass
class Ctx:
    """What one handler call may read."""

    schema: str
    session: SessionData
    inputs: EvseInputs
    config: SeccConfig
    state: SeccState
    now: float  # wall clock, seconds
    new_session_id: Callable[[], str]


Builder = Callable[[Ctx, str], dict[str, Any]]
Handler = Callable[[Ctx, dict[str, Any]], Step]


class RequestError(ValueError):
    """A request whose content does not make sense (missing or bad field)."""


def message(session_id: str, name: str, body: dict[str, Any]) -> Tree:
    return {"V2G_Message": {"Header": {"SessionID": session_id}, "Body": {name: body}}}


def pv(ctx: Ctx, value: float, unit: str) -> dict[str, Any]:
    return from_float(value, unit, ctx.schema)


def read_pv(body: dict[str, Any], key: str) -> float | None:
    node = body.get(key)
    if node is None:
        return None
    try:
        return to_float(node)
    except PhysicalValueError as exc:
        raise RequestError(f"{key}: {exc}") from None


def ev_soc(body: dict[str, Any]) -> float | None:
    status = body.get("DC_EVStatus")
    if isinstance(status, dict) and isinstance(status.get("EVRESSSOC"), int | float):
        return float(status["EVRESSSOC"])
    return None


def _isolation(ctx: Ctx) -> str:
    iso = Isolation.VALID if ctx.config.cable_check_in_standalone else ctx.inputs.isolation
    return {Isolation.VALID: "Valid", Isolation.WARNING: "Warning",
            Isolation.FAULT: "Fault"}.get(iso, "Invalid")


def stop_requested(ctx: Ctx) -> bool:
    return not ctx.inputs.enabled or ctx.session.charging_stopped_by_evse


def dc_status(ctx: Ctx) -> dict[str, Any]:
    """DC_EVSEStatus: a user stop or an isolation fault shows as EVSE_Shutdown + StopCharging."""
    stop = stop_requested(ctx) or ctx.inputs.isolation is Isolation.FAULT
    return {
        "NotificationMaxDelay": 0,
        "EVSENotification": "StopCharging" if stop else "None",
        "EVSEIsolationStatus": _isolation(ctx),
        "EVSEStatusCode": "EVSE_Shutdown" if stop else "EVSE_Ready",
    }


def step(ctx: Ctx, request: str, name: str, body: dict[str, Any], state: SeccState,
         **kw: Any) -> Step:
    """A Step answering `request`; a FAILED code ends the session (the standard's rule)."""
    failed = str(body.get("ResponseCode", "")).startswith("FAILED")
    if failed:
        state = SeccState.SESSION_STOPPED
        kw["close"] = True
        kw.setdefault("error", f"{name} {body['ResponseCode']}")
    return Step(request, name, message(ctx.session.session_id, name, body), state, **kw)


def ongoing_expired(ctx: Ctx) -> bool:
    if ctx.session.ongoing_since is None:
        ctx.session.ongoing_since = ctx.now
    return ctx.now - ctx.session.ongoing_since > ctx.config.ongoing_timeout


# ---------------------------------------------------------------------------- DC builders
def res_cable_check(ctx: Ctx, code: str, processing: str = "Finished") -> dict[str, Any]:
    return {"ResponseCode": code, "DC_EVSEStatus": dc_status(ctx), "EVSEProcessing": processing}


def res_pre_charge(ctx: Ctx, code: str) -> dict[str, Any]:
    return {"ResponseCode": code, "DC_EVSEStatus": dc_status(ctx),
            "EVSEPresentVoltage": pv(ctx, ctx.inputs.present_voltage, "V")}


def res_welding_detection(ctx: Ctx, code: str) -> dict[str, Any]:
    return res_pre_charge(ctx, code)


def res_current_demand(ctx: Ctx, code: str) -> dict[str, Any]:
    inputs, session = ctx.inputs, ctx.session
    tv, tc = session.target_voltage or 0.0, session.target_current or 0.0
    return {
        "ResponseCode": code,
        "DC_EVSEStatus": dc_status(ctx),
        "EVSEPresentVoltage": pv(ctx, inputs.present_voltage, "V"),
        "EVSEPresentCurrent": pv(ctx, inputs.present_current, "A"),
        "EVSECurrentLimitAchieved": tc >= inputs.max_current,
        "EVSEVoltageLimitAchieved": tv >= inputs.max_voltage,
        "EVSEPowerLimitAchieved": tv * tc >= inputs.max_power,
        "EVSEMaximumVoltageLimit": pv(ctx, inputs.max_voltage, "V"),
        "EVSEMaximumCurrentLimit": pv(ctx, inputs.max_current, "A"),
        "EVSEMaximumPowerLimit": pv(ctx, inputs.max_power, "W"),
    }


def dc_charge_parameter(ctx: Ctx) -> dict[str, Any]:
    inputs = ctx.inputs
    return {
        "DC_EVSEStatus": dc_status(ctx),
        "EVSEMaximumCurrentLimit": pv(ctx, inputs.max_current, "A"),
        "EVSEMaximumPowerLimit": pv(ctx, inputs.max_power, "W"),
        "EVSEMaximumVoltageLimit": pv(ctx, inputs.max_voltage, "V"),
        "EVSEMinimumCurrentLimit": pv(ctx, inputs.min_current, "A"),
        "EVSEMinimumVoltageLimit": pv(ctx, inputs.min_voltage, "V"),
        "EVSEPeakCurrentRipple": pv(ctx, inputs.peak_current_ripple, "A"),
    }


# ---------------------------------------------------------------------------- DC handlers
def on_cable_check(ctx: Ctx, body: dict[str, Any]) -> Step:
    """Ongoing until hw/state says the isolation is valid; the first request starts the check."""
    name = "CableCheckRes"
    publish = _soc(ctx, body)
    isolation = Isolation.VALID if ctx.config.cable_check_in_standalone else ctx.inputs.isolation
    if isolation in (Isolation.VALID, Isolation.WARNING) and (
            ctx.session.cable_check_requested or ctx.config.cable_check_in_standalone):
        ctx.session.ongoing_since = None
        return step(ctx, "CableCheckReq", name, res_cable_check(ctx, OK), SeccState.CABLE_CHECK_DONE,
                    publish=publish)
    if isolation is Isolation.FAULT:
        return step(ctx, "CableCheckReq", name, res_cable_check(ctx, FAILED),
                    SeccState.SESSION_STOPPED, error="isolation fault")
    hw = []
    if not ctx.session.cable_check_requested:
        ctx.session.cable_check_requested = True
        hw.append(HwCommand("cable_check"))
    if ongoing_expired(ctx):
        return step(ctx, "CableCheckReq", name, res_cable_check(ctx, FAILED),
                    SeccState.SESSION_STOPPED, error="cable check did not finish in time")
    return step(ctx, "CableCheckReq", name, res_cable_check(ctx, OK, "Ongoing"),
                SeccState.CABLE_CHECK_ONGOING, hw=hw, publish=publish)


def _soc(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    soc = ev_soc(body)
    if soc is None:
        return {}
    ctx.session.soc = soc
    return {"soc": soc}


def _targets(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    publish = _soc(ctx, body)
    tv, tc = read_pv(body, "EVTargetVoltage"), read_pv(body, "EVTargetCurrent")
    if tv is None or tc is None:
        raise RequestError("EVTargetVoltage and EVTargetCurrent are required")
    ctx.session.target_voltage, ctx.session.target_current = tv, tc
    publish.update(target_voltage=max(0.0, tv), target_current=max(0.0, tc))
    return publish


def on_pre_charge(ctx: Ctx, body: dict[str, Any]) -> Step:
    publish = _targets(ctx, body)
    return step(ctx, "PreChargeReq", "PreChargeRes", res_pre_charge(ctx, OK), SeccState.PRECHARGE,
                publish=publish)


def on_current_demand(ctx: Ctx, body: dict[str, Any], extra: dict[str, Any]) -> Step:
    publish = _targets(ctx, body)
    for key in ("EVMaximumVoltageLimit", "EVMaximumCurrentLimit"):
        value = read_pv(body, key)
        if value is not None and key == "EVMaximumVoltageLimit":
            ctx.session.ev_max_voltage = value
        elif value is not None:
            ctx.session.ev_max_current = value
    res = res_current_demand(ctx, OK)
    res.update(extra)
    return step(ctx, "CurrentDemandReq", "CurrentDemandRes", res, SeccState.CHARGING,
                publish=publish)


def on_welding_detection(ctx: Ctx, body: dict[str, Any]) -> Step:
    return step(ctx, "WeldingDetectionReq", "WeldingDetectionRes",
                res_welding_detection(ctx, OK), SeccState.WELDING_DETECTION,
                publish=_soc(ctx, body))


def charge_parameters(ctx: Ctx, dc: dict[str, Any]) -> dict[str, Any]:
    """Publishable values of DC_EVChargeParameter (SoC, battery capacity); keeps the EV limits."""
    publish = _soc(ctx, dc)
    capacity = read_pv(dc, "EVEnergyCapacity")
    if capacity is not None:
        ctx.session.battery_capacity = capacity
        publish["battery_capacity"] = capacity
    ctx.session.energy_request = read_pv(dc, "EVEnergyRequest")
    for key, attr in (("FullSOC", "full_soc"), ("BulkSOC", "bulk_soc")):
        if isinstance(dc.get(key), int | float):
            setattr(ctx.session, attr, float(dc[key]))
    ctx.session.ev_max_voltage = read_pv(dc, "EVMaximumVoltageLimit")
    ctx.session.ev_max_current = read_pv(dc, "EVMaximumCurrentLimit")
    return publish


def power_delivery_effects(ctx: Ctx, start: bool) -> dict[str, Any]:
    """Contactor commands and target values of a PowerDelivery start or stop."""
    if start:
        return {"hw": [HwCommand("contactor", "close")], "wait_contactors": "closed"}
    ctx.session.target_current = 0.0
    return {"hw": [HwCommand("contactor", "open")], "wait_contactors": "open",
            "publish": {"target_current": 0.0}}
