"""Settings of the car side (EVCC): the battery's limits, the stop rules and the standard's timers.

Every timer keeps the name the standard gives it, with the standard's value as default; tests and
benches shorten them here rather than in code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ccsbus.config import setting


@dataclass(frozen=True)
class EvccTimers:
    """DIN 70121 / ISO 15118-2 timers of the EV side, in seconds."""

    V2G_EVCC_Msg_Timeout: float = setting(
        2.0, min=0.01, max=60, help="response timeout of most requests")
    V2G_EVCC_Msg_Timeout_CurrentDemand: float = setting(
        0.25, min=0.01, max=60, help="response timeout of CurrentDemandReq")
    V2G_EVCC_Msg_Timeout_PowerDelivery_ISO: float = setting(
        5.0, min=0.01, max=60, help="ISO 15118-2 response timeout of PowerDeliveryReq")
    V2G_EVCC_CommunicationSetup_Timeout: float = setting(
        20.0, min=0.1, max=600, help="from the link being up until SessionSetupRes")
    V2G_EVCC_ReadyToCharge_Timeout: float = setting(
        150.0, min=0.1, max=600, help="from SessionSetupRes until PowerDeliveryRes (start)")
    V2G_EVCC_CableCheck_Timeout: float = setting(
        40.0, min=0.1, max=600, help="whole CableCheck loop")
    V2G_EVCC_PreCharge_Timeout: float = setting(
        7.0, min=0.1, max=600, help="whole PreCharge loop")
    V2G_EVCC_Ongoing_Timeout: float = setting(
        60.0, min=0.1, max=600, help="how long the charger may answer EVSEProcessing=Ongoing")


@dataclass(frozen=True)
class EvccSettings:
    """`v2g.evcc`: the car side of the V2G session."""

    protocols: list[str] = setting(
        ["iso2", "din"], help="protocols offered in supportedAppProtocolReq, best first (din, iso2)")
    evccid: str = setting(
        "", help="EVCCID (12 hex digits, the PLC MAC); empty: the interface's MAC")
    sdp_target: str = setting(
        "ff02::1", help="where SDP requests go; ::1 for the laptop sim (lo has no multicast)")
    sdp_port: int = setting(15118, min=1, max=65535, help="UDP port of SDP")
    sdp_interval: float = setting(0.25, min=0.01, max=5, help="SDP retransmission interval, s")
    sdp_max_requests: int = setting(50, min=1, max=1000, help="SDP requests before giving up")
    max_voltage: float = setting(450.0, min=0, max=1500, help="EVMaximumVoltageLimit, V")
    max_current: float = setting(125.0, min=0, max=1000, help="EVMaximumCurrentLimit, A")
    max_power: float = setting(50000.0, min=0, max=1e6, help="EVMaximumPowerLimit, W")
    battery_capacity: float = setting(
        40000.0, min=0, max=1e6, help="EVEnergyCapacity in Wh when no battery_capacity arrives")
    default_battery_voltage: float = setting(
        350.0, min=0, max=1500, help="battery voltage until battery_voltage arrives, V")
    default_soc: float = setting(50.0, min=0, max=100, help="SoC until soc arrives, %")
    default_target_current: float = setting(
        20.0, min=0, max=1000, help="charge current request until target_current arrives, A")
    stop_soc: float = setting(100.0, min=0, max=100, help="stop charging at this SoC, %")
    max_charge_time: float = setting(
        0.0, min=0, max=86400, help="stop charging after this many seconds of CurrentDemand (0: never)")
    precharge_delta: float = setting(
        20.0, min=0.1, max=200, help="PreCharge ends when |U_inlet - U_battery| is below this, V")
    precharge_current: float = setting(2.0, min=0, max=10, help="EVTargetCurrent during PreCharge, A")
    precharge_voltage_source: Literal["auto", "inlet", "charger"] = setting(
        "auto", help="U_inlet for PreCharge: inlet (measured), charger (EVSEPresentVoltage) or "
        "auto (measured when an inlet_voltage arrived, else the charger's value)")
    cp_state_c_before: Literal["cable_check", "power_delivery"] = setting(
        "cable_check", help="switch CP to state C before CableCheckReq (DIN chargers check "
        "isolation in C) or only before PowerDeliveryReq (start)")
    current_demand_cycle: float = setting(
        0.1, min=0.0, max=5, help="CurrentDemandReq period, s")
    ongoing_repeat_delay: float = setting(
        0.05, min=0.0, max=5, help="pause before repeating a request answered with Ongoing, s")
    relay_settle_time: float = setting(
        0.1, min=0.0, max=5, help="pause after relay_request on before PowerDeliveryReq, s")
    welding_voltage: float = setting(
        60.0, min=0, max=1500, help="WeldingDetection ends when the charger reads below this, V")
    welding_max_requests: int = setting(
        20, min=1, max=1000, help="WeldingDetectionReq repetitions before SessionStop anyway")
    current_off_threshold: float = setting(
        1.0, min=0, max=100, help="contactors may open once the current is below this, A")
    current_off_timeout: float = setting(
        2.0, min=0, max=30, help="longest wait for the current to drop before opening anyway, s")
    contactor_timeout: float = setting(
        1.0, min=0, max=30, help="longest wait for hw/state to confirm the contactors, s")
    timers: EvccTimers = setting(default_factory=EvccTimers, help="the standard's timers")
