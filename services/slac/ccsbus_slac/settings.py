"""Settings of the SLAC service (the `slac:` section of config/ccsbus.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ccsbus.config import setting


@dataclass(frozen=True)
class SlacTimers:
    """ISO 15118-3 timers and counters, named as the standard names them (seconds / counts)."""

    TT_EVSE_SLAC_init: float = setting(
        50.0, min=0.1, max=120,
        help="EVSE waits this long for CM_SLAC_PARM.REQ after plug-in")
    TT_match_sequence: float = setting(
        0.4, min=0.01, max=10,
        help="max time between messages of one matching sequence")
    TT_match_response: float = setting(0.2, min=0.01, max=10, help="time to answer a request")
    TT_EV_atten_results: float = setting(
        1.2, min=0.05, max=10,
        help="EV collects CM_ATTEN_CHAR.IND this long after the first START_ATTEN_CHAR")
    TT_EVSE_match_MNBC: float = setting(
        0.6, min=0.1, max=25.5,
        help="EVSE sounding window (sent in units of 100 ms)")
    TP_EV_batch_msg_interval: float = setting(
        0.02, min=0.0, max=1,
        help="spacing of START_ATTEN_CHAR / MNBC_SOUND")
    C_EV_match_MNBC: int = setting(10, min=1, max=255, help="number of sounds")
    C_EV_start_atten_char_inds: int = setting(3, min=1, max=10, help="START_ATTEN_CHAR repetitions")
    C_EV_match_retry: int = setting(
        2, min=0, max=10,
        help="retries of a matching step / of the whole matching")
    TT_EVSE_match_session: float = setting(
        10.0, min=0.1, max=60,
        help="EVSE keeps the matching session this long")
    TT_match_join: float = setting(
        12.0, min=0.1, max=60,
        help="the EV joins the logical network within this time")
    T_link_status_poll: float = setting(
        0.05, min=0.005, max=5,
        help="modem link-status polling interval while joining")
    T_modem_response: float = setting(
        1.0, min=0.01, max=30,
        help="time a modem has to answer a management request")
    T_link_supervision: float = setting(
        1.0, min=0, max=60,
        help="while matched, ask the modem this often whether the link is still up (0: never)")


@dataclass(frozen=True)
class SlacSettings:
    interface: str = setting("eth1", help="Ethernet interface the HomePlug modem is attached to")
    link: Literal["pcap", "udp"] = setting(
        "pcap",
        help="pcap: raw Ethernet (root); udp: frames tunnelled to `ccsbus vmodem`")
    udp_host: str = setting("127.0.0.1", help="udp link: virtual modem address")
    udp_port: int = setting(17001, min=1, max=65535, help="udp link: virtual modem port")
    host_mac: str = setting(
        "",
        help="udp link: our MAC address (empty: a random locally administered one)")
    modem_discovery_timeout: float = setting(
        3.0, min=0.05, max=60,
        help="no modem answering within this time is an error")
    modem_retry_interval: float = setting(
        5.0, min=0.1, max=600,
        help="how often to look for a modem again after an error")
    auto_start: bool = setting(
        True,
        help="start matching on the CP trigger (state B/C/D with 5 % duty)")
    cp_duty_min: float = setting(
        3.0, min=0, max=100,
        help="lowest PWM duty (%) read as the 5 % digital-communication request")
    cp_duty_max: float = setting(
        7.0, min=0, max=100,
        help="highest PWM duty (%) read as the 5 % digital-communication request")
    evse_id: str = setting("", help="EVSE id sent in SLAC (17 bytes, padded with zeros)")
    pev_id: str = setting("", help="PEV id sent in SLAC (17 bytes, padded with zeros)")
    no_atten_profile: bool = setting(
        False,
        help="EVSE modem does not produce CM_ATTEN_PROFILE.IND (AR7420/QCA7420): report fixed_attenuation instead")
    fixed_attenuation: int = setting(
        20, min=0, max=255,
        help="dB per group reported when no_atten_profile is set")
    atten_limit: float = setting(
        0.0, min=0, max=255,
        help="PEV: ignore EVSEs whose average attenuation is above this (0: no limit)")
    timers: SlacTimers = field(
        default_factory=SlacTimers,
        metadata={"help": "ISO 15118-3 timers", "min": None, "max": None})
