"""DIN SPEC 70121 request bodies of the car side (DC, external payment)."""

from __future__ import annotations

from ..physical import from_float
from .dialect import EvValues, Tree

DC_MODES = ("DC_extended", "DC_core", "DC_combo_core", "DC_unique")


def _pv(x: float, unit: str) -> Tree:
    return from_float(x, unit, "din")


def _status(ev: EvValues) -> Tree:
    return {"EVReady": ev.ready, "EVErrorCode": "NO_ERROR",
            "EVRESSSOC": max(0, min(100, round(ev.soc)))}


class Din:
    schema = "din"
    namespace = "urn:din:70121:2012:MsgDef"
    # real DIN cars send a one-byte zero SessionID in SessionSetupReq
    initial_session_id = "00"
    payment_selection = "ServicePaymentSelection"
    authorization = "ContractAuthentication"

    def session_setup(self, evccid: str) -> Tree:
        return {"SessionSetupReq": {"EVCCID": evccid}}

    def service_discovery(self) -> Tree:
        return {"ServiceDiscoveryReq": {}}

    def payment_selection_req(self, service_id: int) -> Tree:
        return {"ServicePaymentSelectionReq": {
            "SelectedPaymentOption": "ExternalPayment",
            "SelectedServiceList": {"SelectedService": [{"ServiceID": service_id}]}}}

    def authorization_req(self) -> Tree:
        return {"ContractAuthenticationReq": {}}

    def charge_parameter_discovery(self, ev: EvValues, transfer_mode: str) -> Tree:
        return {"ChargeParameterDiscoveryReq": {
            "EVRequestedEnergyTransferType": transfer_mode,
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
            "ReadyToChargeState": start,
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
        return {"SessionStopReq": {}}

    def charge_service(self, res: Tree) -> tuple[int, list[str]]:
        service = res.get("ChargeService") or {}
        tag = service.get("ServiceTag") or {}
        mode = service.get("EnergyTransferType")
        modes = [mode] if isinstance(mode, str) and mode in DC_MODES else []
        return int(tag.get("ServiceID", 1)), modes

    def msg_timeout_name(self, request: str) -> str:
        if request == "CurrentDemand":
            return "V2G_EVCC_Msg_Timeout_CurrentDemand"
        return "V2G_EVCC_Msg_Timeout"
