"""ISO 15118-2 request bodies of the car side (DC, external payment)."""

from __future__ import annotations

from ..physical import from_float
from .dialect import EvValues, Tree

DC_MODES = ("DC_extended", "DC_core", "DC_combo_core", "DC_unique")


def _pv(x: float, unit: str) -> Tree:
    return from_float(x, unit, "iso2")


def _status(ev: EvValues) -> Tree:
    return {"EVReady": ev.ready, "EVErrorCode": "NO_ERROR",
            "EVRESSSOC": max(0, min(100, round(ev.soc)))}


class Iso2:
    schema = "iso2"
    namespace = "urn:iso:15118:2:2013:MsgDef"
    initial_session_id = "0000000000000000"
    payment_selection = "PaymentServiceSelection"
    authorization = "Authorization"

    def session_setup(self, evccid: str) -> Tree:
        return {"SessionSetupReq": {"EVCCID": evccid}}

    def service_discovery(self) -> Tree:
        return {"ServiceDiscoveryReq": {}}

    def payment_selection_req(self, service_id: int) -> Tree:
        return {"PaymentServiceSelectionReq": {
            "SelectedPaymentOption": "ExternalPayment",
            "SelectedServiceList": {"SelectedService": [{"ServiceID": service_id}]}}}

    def authorization_req(self) -> Tree:
        return {"AuthorizationReq": {}}

    def charge_parameter_discovery(self, ev: EvValues, transfer_mode: str) -> Tree:
        return {"ChargeParameterDiscoveryReq": {
            "RequestedEnergyTransferMode": transfer_mode,
            "DC_EVChargeParameter": {
                "DC_EVStatus": _status(ev),
                "EVMaximumCurrentLimit": _pv(ev.max_current, "A"),
                "EVMaximumPowerLimit": _pv(ev.max_power, "W"),
                "EVMaximumVoltageLimit": _pv(ev.max_voltage, "V"),
                "EVEnergyCapacity": _pv(ev.capacity_wh, "Wh"),
                "EVEnergyRequest": _pv(ev.energy_request_wh, "Wh"),
                "FullSOC": 100,
                "BulkSOC": 80,
            }}}

    def cable_check(self, ev: EvValues) -> Tree:
        return {"CableCheckReq": {"DC_EVStatus": _status(ev)}}

    def pre_charge(self, ev: EvValues, voltage: float, current: float) -> Tree:
        return {"PreChargeReq": {"DC_EVStatus": _status(ev),
                                 "EVTargetVoltage": _pv(voltage, "V"),
                                 "EVTargetCurrent": _pv(current, "A")}}

    def power_delivery(self, ev: EvValues, start: bool, schedule_id: int) -> Tree:
        return {"PowerDeliveryReq": {
            "ChargeProgress": "Start" if start else "Stop",
            "SAScheduleTupleID": schedule_id,
            "DC_EVPowerDeliveryParameter": {"DC_EVStatus": _status(ev),
                                            "BulkChargingComplete": False,
                                            "ChargingComplete": ev.charging_complete}}}

    def current_demand(self, ev: EvValues) -> Tree:
        return {"CurrentDemandReq": {
            "DC_EVStatus": _status(ev),
            "EVTargetCurrent": _pv(ev.target_current, "A"),
            "EVMaximumVoltageLimit": _pv(ev.max_voltage, "V"),
            "EVMaximumCurrentLimit": _pv(ev.max_current, "A"),
            "EVMaximumPowerLimit": _pv(ev.max_power, "W"),
            "BulkChargingComplete": False,
            "ChargingComplete": ev.charging_complete,
            "EVTargetVoltage": _pv(ev.target_voltage, "V")}}

    def welding_detection(self, ev: EvValues) -> Tree:
        return {"WeldingDetectionReq": {"DC_EVStatus": _status(ev)}}

    def session_stop(self) -> Tree:
        return {"SessionStopReq": {"ChargingSession": "Terminate"}}

    def charge_service(self, res: Tree) -> tuple[int, list[str]]:
        service = res.get("ChargeService") or {}
        offered = (service.get("SupportedEnergyTransferMode") or {}).get("EnergyTransferMode")
        if isinstance(offered, str):
            offered = [offered]
        modes = [m for m in offered or [] if m in DC_MODES]
        return int(service.get("ServiceID", 1)), modes

    def msg_timeout_name(self, request: str) -> str:
        if request == "CurrentDemand":
            return "V2G_EVCC_Msg_Timeout_CurrentDemand"
        if request == "PowerDelivery":
            return "V2G_EVCC_Msg_Timeout_PowerDelivery_ISO"
        return "V2G_EVCC_Msg_Timeout"
