"""The v2g service: settings and the role switch (EVSE: SECC, PEV: EVCC)."""

from __future__ import annotations

from dataclasses import dataclass

from ccsbus.config import ConfigError, setting
from ccsbus.lifecycle import ServiceContext, ServiceSpec

from .apphand import PROTOCOLS
from .codec import CodecMode
from .evcc.settings import EvccSettings
from .secc.faults import FaultError, parse_fault

ENERGY_MODES = ("DC_extended", "DC_core", "AC_three_phase_core", "AC_single_phase_core")


@dataclass(frozen=True)
class SeccTimers:
    """ISO 15118-2 / DIN 70121 timers of the charger side, in seconds."""

    V2G_SECC_Sequence_Timeout: float = setting(
        60.0, min=0.05, max=600, help="longest silence between two requests before the SECC "
        "ends the session")
    V2G_SECC_CommunicationSetup_Timeout: float = setting(
        18.0, min=0.05, max=600, help="from the TCP connection until SessionSetupRes")
    V2G_SECC_Ongoing_Timeout: float = setting(
        55.0, min=0.05, max=600, help="longest run of EVSEProcessing=Ongoing answers (the car "
        "gives up after 60 s)")
    stop_timeout: float = setting(
        10.0, min=0.1, max=600, help="after a user stop (enabled 0, v2g/cmd stop), how long the car may "
        "keep the session before the SECC cuts it and asks hw for a safe shutdown")
    CPState_Detection_Timeout: float = setting(
        1.5, min=0.0, max=30, help="at PowerDelivery start, longest wait for the car's CP state C/D "
        "(cp/state from hw) before the SECC refuses to close the contactors")
    contactor_timeout: float = setting(
        4.0, min=0.0, max=30, help="longest wait for hw/state to confirm the contactors before "
        "PowerDeliveryRes (whose performance time is 4.5 s)")


@dataclass(frozen=True)
class V2gSettings:
    interface: str = setting(
        "", help="PLC network interface; empty: the one slac/link names (lo without SLAC). "
        "`lo` runs the laptop simulation: SDP and TCP on ::1, SDP by unicast")
    address: str = setting(
        "", help="our IPv6 address for TCP and the SDP response; empty: the interface's "
        "link-local address (::1 on lo)")
    tcp_port: int = setting(
        0, min=0, max=65535, help="SECC TCP port; 0: a free one of 49152..65535, as ISO 15118-2 asks")
    sdp_port: int = setting(15118, min=0, max=65535, help="UDP port of SDP (0: any, for tests)")
    protocols: list[str] = setting(
        ["iso2", "din"], help="SECC: protocols enabled (din, iso2); the car's priority decides "
        "among them, this order only breaks ties")
    energy_modes: list[str] = setting(
        ["DC_extended"], help="SECC: energy transfer modes offered (ISO-2 also AC_three_phase_core, "
        "AC_single_phase_core; DIN is always DC_extended)")
    codec: CodecMode = setting(
        CodecMode.MQTT, help="mqtt: the codec service over the broker; inprocess: the C binding "
        "in this process")
    codec_timeout: float = setting(1.0, min=0.01, max=30, help="longest wait for a codec reply, s")
    wait_for_link: bool = setting(
        True, help="start SDP/TCP only while slac/link is up; false: at once (simulation, tests)")
    auto_authorize: bool = setting(
        True, help="SECC: authorise every car at once (free charging); false: answer Ongoing "
        "until v2g/cmd {\"cmd\": \"authorize\"}")
    fault: str = setting(
        "", help="SECC fault injection: a case number 1..20 or its name (services/v2g/README.md); "
        "empty: none")
    standalone: bool = setting(
        False, help="SECC without a hw service: isolation valid at once, present voltage/current "
        "follow the car's targets (benches and interop tests only)")
    evse_id: str = setting(
        "", help="EVSEID; empty: the standards' 'none' values (DIN 00, ISO-2 ZZ00000)")
    max_voltage: float = setting(500.0, min=0, max=1500, help="charger maximum voltage until "
                                 "charger_max_voltage arrives, V")
    max_current: float = setting(200.0, min=0, max=1000, help="charger maximum current until "
                                 "charger_max_current arrives, A")
    max_power: float = setting(100000.0, min=0, max=1e6, help="charger maximum power, W")
    min_voltage: float = setting(50.0, min=0, max=1500, help="charger minimum voltage, V")
    min_current: float = setting(0.0, min=0, max=1000, help="charger minimum current, A")
    peak_current_ripple: float = setting(1.0, min=0, max=100, help="EVSEPeakCurrentRipple, A")
    max_payload: int = setting(
        65536, min=256, max=1 << 20, help="largest V2GTP payload accepted; larger closes the "
        "connection")
    timers: SeccTimers = setting(default_factory=SeccTimers,
                                 help="the charger side's timers")
    evcc: EvccSettings = setting(default_factory=EvccSettings,
                                 help="the car side (PEV role)")

    def __post_init__(self) -> None:
        if not self.protocols or any(p not in PROTOCOLS for p in self.protocols):
            raise ConfigError("v2g.protocols", self.protocols,
                              f"a non-empty list of {', '.join(PROTOCOLS)}")
        if not self.energy_modes or any(m not in ENERGY_MODES for m in self.energy_modes):
            raise ConfigError("v2g.energy_modes", self.energy_modes,
                              f"a non-empty list of {', '.join(ENERGY_MODES)}")
        try:
            parse_fault(self.fault)
        except FaultError as exc:
            raise ConfigError("v2g.fault", self.fault, str(exc).split(" is not ", 1)[-1]) from None


async def run(ctx: ServiceContext[V2gSettings]) -> None:
    """EVSE: our SECC; PEV: the EVCC. Each role waits for slac/link itself (per plug-in)."""
    if ctx.role == "EVSE":
        from . import evse_role

        await evse_role.run(ctx)
    elif ctx.role == "PEV":
        from . import pev_role  # the EVCC, imported only when needed

        await pev_role.run(ctx)
    else:
        ctx.log.info("no V2G in this role", role=ctx.role)
        await ctx.stopping.wait()


SPEC = ServiceSpec(
    name="v2g",
    settings=V2gSettings,
    run=run,
    description="SDP, V2GTP and the DIN 70121 / ISO 15118-2 state machines (SECC or EVCC)",
)
