"""Fault injection of our SECC, for testing car-side stacks (ours and others).

Cases 1..16 follow the charger-side fault list a PEV must survive (pyPLC's numbering); four more
break the transport. "after N" means the first N matching responses go out untouched and the
(N+1)-th is the faulty one. Pure: the role layer asks `FaultInjector.apply(step)` what to do.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import Enum

from .model import Step


class FaultAction(Enum):
    NONE = "none"
    MODIFY = "modify"  # send the modified response
    NO_RESPONSE = "no_response"  # stay silent, keep the connection
    TCP_RESET = "tcp_reset"  # reset the connection instead of answering
    MALFORMED_EXI = "malformed_exi"  # answer with bytes that are not EXI
    BAD_V2GTP_HEADER = "bad_v2gtp_header"  # answer with a wrong V2GTP protocol version
    SESSION_ID_CHANGE = "session_id_change"  # answer with another SessionID


@dataclass(frozen=True)
class FaultCase:
    number: int
    name: str
    responses: frozenset[str]  # the response names it hits
    after: int
    action: FaultAction
    response_code: str | None = None
    status_code: str | None = None


def _r(*names: str) -> frozenset[str]:
    return frozenset(names)


CURRENT_DEMAND = _r("CurrentDemandRes")
TRANSPORT_AFTER = 5  # the transport faults hit the 6th CurrentDemandRes

CASES: tuple[FaultCase, ...] = (
    FaultCase(1, "session_setup_sequence_error", _r("SessionSetupRes"), 0, FaultAction.MODIFY,
              "FAILED_SequenceError"),
    FaultCase(2, "cable_check_failed", _r("CableCheckRes"), 0, FaultAction.MODIFY, "FAILED"),
    FaultCase(3, "service_discovery_sequence_error", _r("ServiceDiscoveryRes"), 0,
              FaultAction.MODIFY, "FAILED_SequenceError"),
    FaultCase(4, "payment_selection_sequence_error",
              _r("ServicePaymentSelectionRes", "PaymentServiceSelectionRes"), 0,
              FaultAction.MODIFY, "FAILED_SequenceError"),
    FaultCase(5, "authorization_sequence_error",
              _r("ContractAuthenticationRes", "AuthorizationRes"), 0, FaultAction.MODIFY,
              "FAILED_SequenceError"),
    FaultCase(6, "charge_parameter_service_selection_invalid", _r("ChargeParameterDiscoveryRes"),
              0, FaultAction.MODIFY, "FAILED_ServiceSelectionInvalid"),
    FaultCase(7, "pre_charge_failed", _r("PreChargeRes"), 2, FaultAction.MODIFY, "FAILED"),
    FaultCase(8, "power_delivery_failed", _r("PowerDeliveryRes"), 0, FaultAction.MODIFY, "FAILED"),
    FaultCase(9, "current_demand_failed", CURRENT_DEMAND, 10, FaultAction.MODIFY, "FAILED"),
    FaultCase(10, "no_response_cable_check", _r("CableCheckRes"), 0, FaultAction.NO_RESPONSE),
    FaultCase(11, "no_response_pre_charge", _r("PreChargeRes"), 0, FaultAction.NO_RESPONSE),
    FaultCase(12, "pre_charge_evse_shutdown", _r("PreChargeRes"), 2, FaultAction.MODIFY,
              status_code="EVSE_Shutdown"),
    FaultCase(13, "current_demand_evse_shutdown", CURRENT_DEMAND, 20, FaultAction.MODIFY,
              status_code="EVSE_Shutdown"),
    FaultCase(14, "current_demand_evse_malfunction", CURRENT_DEMAND, 5, FaultAction.MODIFY,
              status_code="EVSE_Malfunction"),
    FaultCase(15, "no_response_current_demand", CURRENT_DEMAND, 30, FaultAction.NO_RESPONSE),
    FaultCase(16, "good_case", _r(), 0, FaultAction.NONE),
    FaultCase(17, "tcp_reset", CURRENT_DEMAND, TRANSPORT_AFTER, FaultAction.TCP_RESET),
    FaultCase(18, "session_id_change", CURRENT_DEMAND, TRANSPORT_AFTER,
              FaultAction.SESSION_ID_CHANGE),
    FaultCase(19, "malformed_exi", CURRENT_DEMAND, TRANSPORT_AFTER, FaultAction.MALFORMED_EXI),
    FaultCase(20, "bad_v2gtp_header", CURRENT_DEMAND, TRANSPORT_AFTER,
              FaultAction.BAD_V2GTP_HEADER),
)
BY_NUMBER = {case.number: case for case in CASES}
BY_NAME = {case.name: case for case in CASES}


class FaultError(ValueError):
    """A fault selector that names no case."""


def parse_fault(value: object) -> FaultCase | None:
    """A case from its number (1..20, as int or text) or name; None/0/""/"none" select none."""
    if value is None or value == 0 or (isinstance(value, str) and value.strip().lower() in
                                       ("", "0", "none", "off")):
        return None
    if isinstance(value, bool):
        raise FaultError(f"fault {value!r} is neither a number nor a name")
    if isinstance(value, int | float) and float(value).is_integer() and int(value) in BY_NUMBER:
        return BY_NUMBER[int(value)]
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and int(text) in BY_NUMBER:
            return BY_NUMBER[int(text)]
        if text in BY_NAME:
            return BY_NAME[text]
    raise FaultError(f"fault {value!r} is not 1..{len(CASES)} or one of {', '.join(BY_NAME)}")


class FaultInjector:
    """Counts the matching responses of one session and fires the selected case once."""

    def __init__(self, case: FaultCase | None = None) -> None:
        self.case = case
        self.seen = 0
        self.fired = False

    def select(self, case: FaultCase | None) -> None:
        self.case, self.seen, self.fired = case, 0, False

    def apply(self, step: Step) -> FaultAction:
        """Decide for one outgoing response; MODIFY edits step.response in place."""
        case = self.case
        if case is None or self.fired or step.response is None:
            return FaultAction.NONE
        if step.response_name not in case.responses:
            return FaultAction.NONE
        self.seen += 1
        if self.seen <= case.after:
            return FaultAction.NONE
        # the no-response cases keep silent for the rest of the phase, so the car's timer fires
        if case.action is not FaultAction.NO_RESPONSE:
            self.fired = True
        if case.action is FaultAction.MODIFY:
            tree = copy.deepcopy(step.response)
            body = tree["V2G_Message"]["Body"][step.response_name]
            if case.response_code is not None:
                body["ResponseCode"] = case.response_code
            if case.status_code is not None:
                for key in ("DC_EVSEStatus",):
                    if key in body:
                        body[key]["EVSEStatusCode"] = case.status_code
            step.response = tree
        elif case.action is FaultAction.SESSION_ID_CHANGE:
            tree = copy.deepcopy(step.response)
            old = str(tree["V2G_Message"]["Header"]["SessionID"])
            tree["V2G_Message"]["Header"]["SessionID"] = "".join(
                format((int(ch, 16) + 1) % 16, "X") for ch in old)
            step.response = tree
            return FaultAction.MODIFY
        return case.action
