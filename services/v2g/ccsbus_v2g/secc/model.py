"""What the SECC state machines read (the charger's inputs, the config) and what they return.

The machines never touch sockets or MQTT: a `Step` names the response tree, the next state, the
hardware commands and the values to publish, and the role layer carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

Tree = dict[str, Any]


class SeccState(Enum):
    """Named after the last request answered; the protocol tables say which request may follow."""

    WAIT_SESSION_SETUP = "WaitSessionSetup"
    SESSION_SETUP = "SessionSetup"
    SERVICE_DISCOVERY = "ServiceDiscovery"
    SERVICE_DETAIL = "ServiceDetail"
    PAYMENT_SELECTION = "PaymentSelection"
    AUTHORIZATION_ONGOING = "AuthorizationOngoing"
    AUTHORIZED = "Authorized"
    CHARGE_PARAMETER_DISCOVERY = "ChargeParameterDiscovery"
    CABLE_CHECK_ONGOING = "CableCheckOngoing"
    CABLE_CHECK_DONE = "CableCheckDone"
    PRECHARGE = "PreCharge"
    CHARGING = "Charging"
    POWER_DELIVERY_STOPPED = "PowerDeliveryStopped"
    WELDING_DETECTION = "WeldingDetection"
    SESSION_STOPPED = "SessionStopped"


class Isolation(Enum):
    """hw/state.isolation, the isolation monitor's verdict."""

    UNKNOWN = "unknown"
    ONGOING = "ongoing"
    VALID = "valid"
    WARNING = "warning"
    FAULT = "fault"


@dataclass
class EvseInputs:
    """The charger's present limits and values, as the role layer last heard them on MQTT."""

    max_voltage: float = 500.0
    max_current: float = 200.0
    max_power: float = 100000.0
    min_voltage: float = 50.0
    min_current: float = 0.0
    peak_current_ripple: float = 1.0
    present_voltage: float = 0.0
    present_current: float = 0.0
    isolation: Isolation = Isolation.UNKNOWN
    contactors: str = "open"
    authorized: bool = False
    enabled: bool = True


@dataclass(frozen=True)
class SeccConfig:
    """The parts of the service settings the state machines need."""

    evse_id_din: str = "00"  # hexBinary; 0x00 is DIN's "no EVSEID"
    evse_id_iso2: str = "ZZ00000"  # ISO 15118-2's "no EVSEID"
    energy_modes: tuple[str, ...] = ("DC_extended",)
    ongoing_timeout: float = 55.0  # the car gives up after 60 s (V2G_EVCC_Ongoing_Timeout)
    cable_check_in_standalone: bool = False  # no hw service: isolation valid at once


@dataclass
class SessionData:
    """One V2G session as the SECC keeps it."""

    protocol: str
    session_id: str = ""  # hex, upper case, as in the trees
    evccid: str | None = None
    energy_mode: str | None = None
    soc: float | None = None
    target_voltage: float | None = None
    target_current: float | None = None
    ev_max_voltage: float | None = None
    ev_max_current: float | None = None
    battery_capacity: float | None = None  # Wh (EVEnergyCapacity)
    energy_request: float | None = None  # Wh still wanted (EVEnergyRequest)
    full_soc: float | None = None  # %
    bulk_soc: float | None = None  # %
    started: float | None = None  # wall time of SessionSetup
    ongoing_since: float | None = None
    cable_check_requested: bool = False
    paused_session_id: str | None = None
    sa_schedule_tuple_id: int = 1
    charging_stopped_by_evse: bool = False


@dataclass(frozen=True)
class HwCommand:
    cmd: str
    value: Any = None


@dataclass
class Step:
    """The outcome of one request."""

    request: str
    response_name: str
    response: Tree | None
    state: SeccState
    hw: list[HwCommand] = field(default_factory=list)
    publish: dict[str, Any] = field(default_factory=dict)
    wait_contactors: str | None = None  # "closed"/"open": answer only once hw/state confirms
    close: bool = False  # end the TCP connection after the response
    error: str | None = None  # why the response is a FAILED one

    @property
    def response_code(self) -> str | None:
        if self.response is None:
            return None
        body = self.response["V2G_Message"]["Body"][self.response_name]
        code: str | None = body.get("ResponseCode")
        return code
