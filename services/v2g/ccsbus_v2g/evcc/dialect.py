"""What differs between DIN 70121 and ISO 15118-2 on the car side: message names and body shapes.

The sequence is the same DC sequence in both; each protocol module implements this interface with
its own element names and optional parts, so the state machine reads the same for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

Tree = dict[str, Any]


@dataclass(frozen=True)
class EvValues:
    """The car's values for one request (from the battery inputs and the settings)."""

    soc: float
    battery_voltage: float
    target_voltage: float
    target_current: float
    max_voltage: float
    max_current: float
    max_power: float
    capacity_wh: float
    energy_request_wh: float
    ready: bool = True
    charging_complete: bool = False


class Dialect(Protocol):
    schema: str
    namespace: str
    initial_session_id: str
    payment_selection: str  # request name without the Req suffix
    authorization: str

    def session_setup(self, evccid: str) -> Tree: ...

    def service_discovery(self) -> Tree: ...

    def payment_selection_req(self, service_id: int) -> Tree: ...

    def authorization_req(self) -> Tree: ...

    def charge_parameter_discovery(self, ev: EvValues, transfer_mode: str) -> Tree: ...

    def cable_check(self, ev: EvValues) -> Tree: ...

    def pre_charge(self, ev: EvValues, voltage: float, current: float) -> Tree: ...

    def power_delivery(self, ev: EvValues, start: bool, schedule_id: int) -> Tree: ...

    def current_demand(self, ev: EvValues) -> Tree: ...

    def welding_detection(self, ev: EvValues) -> Tree: ...

    def session_stop(self) -> Tree: ...

    def charge_service(self, res: Tree) -> tuple[int, list[str]]:
        """(ServiceID, DC energy transfer modes offered) of a ServiceDiscoveryRes body."""
        ...

    def msg_timeout_name(self, request: str) -> str:
        """Name of the per-message timer (V2G_EVCC_Msg_Timeout or a message-specific one)."""
        ...
