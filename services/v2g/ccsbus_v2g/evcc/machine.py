"""The EVCC's DC charging sequence (DIN 70121 and ISO 15118-2) as a pure state machine.

One state per request we wait the answer of. Input: a decoded response tree (or a timeout, a lost
connection, a broken frame) plus the car's present values and the time; output: a `Step` with the
next request tree, the actions to carry out before sending it, and how long to wait for the answer.
No I/O here, so the whole sequence, every fault and every timer is tested without sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from ccsbus.log import get_logger

from ..physical import PhysicalValueError, to_float
from .actions import (
    Action,
    AwaitContactors,
    AwaitCurrentBelow,
    Finished,
    PublishCharger,
    SetCp,
    SetLock,
    SetRelay,
)
from .dialect import Dialect, EvValues, Tree
from .din import Din
from .iso2 import Iso2
from .settings import EvccSettings

log = get_logger("v2g.evcc")

DIALECTS: dict[str, Dialect] = {"din": Din(), "iso2": Iso2()}

# EVSEStatusCode values after which the car must not go on (fault-cases.md, DIN/ISO status table)
SHUTDOWN_STATUS = frozenset({"EVSE_Shutdown", "EVSE_EmergencyShutdown", "EVSE_Malfunction"})


class EvccState(Enum):
    """Named after the request whose response the machine waits for."""

    IDLE = "Idle"
    SESSION_SETUP = "WaitSessionSetupRes"
    SERVICE_DISCOVERY = "WaitServiceDiscoveryRes"
    PAYMENT_SELECTION = "WaitPaymentSelectionRes"
    AUTHORIZATION = "WaitAuthorizationRes"
    CHARGE_PARAMETER_DISCOVERY = "WaitChargeParameterDiscoveryRes"
    CABLE_CHECK = "WaitCableCheckRes"
    PRE_CHARGE = "WaitPreChargeRes"
    POWER_DELIVERY_START = "WaitPowerDeliveryStartRes"
    CURRENT_DEMAND = "WaitCurrentDemandRes"
    POWER_DELIVERY_STOP = "WaitPowerDeliveryStopRes"
    WELDING_DETECTION = "WaitWeldingDetectionRes"
    SESSION_STOP = "WaitSessionStopRes"
    FINISHED = "Finished"
    SAFE_SHUTDOWN = "SafeShutdown"


TERMINAL = frozenset({EvccState.FINISHED, EvccState.SAFE_SHUTDOWN})
# a user stop here ends the session without charging (SessionStop right away)
BEFORE_CHARGING = frozenset({EvccState.SESSION_SETUP, EvccState.SERVICE_DISCOVERY,
                             EvccState.PAYMENT_SELECTION, EvccState.AUTHORIZATION,
                             EvccState.CHARGE_PARAMETER_DISCOVERY, EvccState.CABLE_CHECK})
# after these the car is already on its way out: a charger saying "shutdown" changes nothing
STOPPING = frozenset({EvccState.POWER_DELIVERY_STOP, EvccState.WELDING_DETECTION,
                      EvccState.SESSION_STOP})


@dataclass
class EvInputs:
    """The car's present values as the hardware, CAN or the user last reported them."""

    battery_voltage: float | None = None
    target_voltage: float | None = None
    target_current: float | None = None
    soc: float | None = None
    inlet_voltage: float | None = None
    battery_capacity: float | None = None
    stop_requested: bool = False


@dataclass
class Step:
    """What to do next: actions in order, then (after `delay`) send `request`, wait `timeout`."""

    state: EvccState
    request: Tree | None = None  # the whole V2G_Message tree
    name: str = ""  # request element name, e.g. CurrentDemandReq
    actions: list[Action] = field(default_factory=list)
    delay: float = 0.0
    timeout: float = 0.0
    timer: str = ""  # the standard's name of the timer that bounds `timeout`


class EvccMachine:
    """One V2G session of the car side, from SessionSetupReq to SessionStopRes or safe shutdown."""

    def __init__(self, protocol: str, settings: EvccSettings, evccid: str,
                 started: float) -> None:
        if protocol not in DIALECTS:
            raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(DIALECTS)}")
        self.protocol = protocol
        self.dialect = DIALECTS[protocol]
        self.settings = settings
        self.timers = settings.timers
        self.evccid = evccid
        self.state = EvccState.IDLE
        self.session_id: str | None = None
        self.evseid: str | None = None
        self.service_id = 1
        self.transfer_mode = "DC_extended"
        self.schedule_id = 1
        self.cp_c = False
        self.relay_on = False
        self.charger: dict[str, float] = {}
        self.finished: Finished | None = None
        self.current_demand_count = 0
        self.welding_count = 0
        self.charge_started: float | None = None
        self.last_sent: float | None = None
        # sequence deadlines: name -> absolute time
        self._deadlines: dict[str, float] = {
            "V2G_EVCC_CommunicationSetup_Timeout":
                started + self.timers.V2G_EVCC_CommunicationSetup_Timeout,
        }
        self._pending_name = ""
        self._pending_timer = ""

    # ------------------------------------------------------------------ entry points
    def start(self, inputs: EvInputs, now: float) -> Step:
        """The first request: SessionSetupReq with the zero SessionID."""
        return self._send(EvccState.SESSION_SETUP, self.dialect.session_setup(self.evccid),
                          inputs, now)

    def on_response(self, tree: Tree, inputs: EvInputs, now: float) -> Step:
        """The decoded answer to the pending request."""
        if self.state in TERMINAL or self.state is EvccState.IDLE:
            return self._shutdown(f"response in state {self.state.value}", now)
        problem, name, body = self._check(tree)
        if problem:
            return self._shutdown(problem, now)
        expired = self._expired(now)
        if expired and self.state not in STOPPING:
            return self._shutdown(f"{expired} expired in {self.state.value}", now)
        if inputs.stop_requested and self.state in BEFORE_CHARGING:
            return self._user_stop_before_charging(inputs, now, [])
        return self._handle(name, body, inputs, now)

    def on_timeout(self, now: float) -> Step:
        """No answer within the step's timeout."""
        return self._shutdown(
            f"{self._pending_timer or 'V2G_EVCC_Msg_Timeout'}: no {self._pending_name}Res", now)

    def on_error(self, reason: str, now: float) -> Step:
        """The connection dropped, a V2GTP header was bad or the EXI did not decode."""
        return self._shutdown(reason, now)

    def shutdown(self, reason: str, now: float) -> Step:
        """Stop at once (service stopping, link lost): the safe shutdown sequence."""
        return self._shutdown(reason, now)

    # ------------------------------------------------------------------ response checks
    def _check(self, tree: Tree) -> tuple[str, str, Tree]:
        message = tree.get("V2G_Message") if isinstance(tree, dict) else None
        if not isinstance(message, dict):
            return "response is not a V2G_Message", "", {}
        body = message.get("Body")
        if not isinstance(body, dict) or len(body) != 1:
            return "response body does not hold exactly one message", "", {}
        name, content = next(iter(body.items()))
        expected = self._pending_name + "Res"
        if name != expected:
            return f"unexpected {name} while waiting for {expected}", name, {}
        if not isinstance(content, dict):
            return f"{name} has no content", name, {}
        session = str((message.get("Header") or {}).get("SessionID", "")).upper()
        if self.state is EvccState.SESSION_SETUP:
            self.session_id = session
        elif session != self.session_id:
            return (f"SessionID changed from {self.session_id} to {session} in {name}", name,
                    content)
        code = str(content.get("ResponseCode", ""))
        if not code.startswith("OK"):
            return f"{name} ResponseCode {code or '(missing)'}", name, content
        status = _evse_status(content)
        if status in SHUTDOWN_STATUS and self.state not in STOPPING:
            return f"{name} EVSEStatusCode {status}", name, content
        return "", name, content

    def _expired(self, now: float) -> str:
        for timer, deadline in self._deadlines.items():
            if now > deadline:
                return timer
        return ""

    # ------------------------------------------------------------------ transitions
    def _handle(self, name: str, res: Tree, inputs: EvInputs, now: float) -> Step:
        d = self.dialect
        ev = self._ev(inputs)
        match self.state:
            case EvccState.SESSION_SETUP:
                self.evseid = str(res.get("EVSEID", "")) or None
                self._deadlines.pop("V2G_EVCC_CommunicationSetup_Timeout", None)
                self._deadlines["V2G_EVCC_ReadyToCharge_Timeout"] = (
                    now + self.timers.V2G_EVCC_ReadyToCharge_Timeout)
                return self._next(EvccState.SERVICE_DISCOVERY, d.service_discovery(), inputs, now)
            case EvccState.SERVICE_DISCOVERY:
                service_id, modes = d.charge_service(res)
                if not modes:
                    return self._shutdown("charger offers no DC energy transfer mode", now)
                payment = _payment_options(res)
                if payment and "ExternalPayment" not in payment:
                    return self._shutdown("charger offers no ExternalPayment", now)
                self.service_id = service_id
                self.transfer_mode = "DC_extended" if "DC_extended" in modes else modes[0]
                return self._next(EvccState.PAYMENT_SELECTION,
                                  d.payment_selection_req(self.service_id), inputs, now)
            case EvccState.PAYMENT_SELECTION:
                self._deadlines["V2G_EVCC_Ongoing_Timeout"] = (
                    now + self.timers.V2G_EVCC_Ongoing_Timeout)
                return self._next(EvccState.AUTHORIZATION, d.authorization_req(), inputs, now)
            case EvccState.AUTHORIZATION:
                if res.get("EVSEProcessing") == "Ongoing":
                    return self._repeat(d.authorization_req(), inputs, now)
                self._deadlines["V2G_EVCC_Ongoing_Timeout"] = (
                    now + self.timers.V2G_EVCC_Ongoing_Timeout)
                return self._next(EvccState.CHARGE_PARAMETER_DISCOVERY,
                                  d.charge_parameter_discovery(_with(ev, ready=False),
                                                               self.transfer_mode),
                                  inputs, now)
            case EvccState.CHARGE_PARAMETER_DISCOVERY:
                if res.get("EVSEProcessing") == "Ongoing":
                    return self._repeat(d.charge_parameter_discovery(_with(ev, ready=False),
                                                                     self.transfer_mode),
                                        inputs, now)
                self._deadlines.pop("V2G_EVCC_Ongoing_Timeout", None)
                self.schedule_id = _schedule_id(res, self.schedule_id)
                actions: list[Action] = [*self._charger_values(res), SetLock("lock")]
                if self.settings.cp_state_c_before == "cable_check":
                    actions.append(SetCp("C"))
                    self.cp_c = True
                self._deadlines["V2G_EVCC_CableCheck_Timeout"] = (
                    now + self.timers.V2G_EVCC_CableCheck_Timeout)
                return self._next(EvccState.CABLE_CHECK, d.cable_check(ev), inputs, now, actions)
            case EvccState.CABLE_CHECK:
                if res.get("EVSEProcessing") == "Ongoing":
                    return self._repeat(d.cable_check(ev), inputs, now)
                isolation = (res.get("DC_EVSEStatus") or {}).get("EVSEIsolationStatus")
                if isolation in ("Invalid", "Fault"):
                    return self._shutdown(f"CableCheckRes EVSEIsolationStatus {isolation}", now)
                self._deadlines.pop("V2G_EVCC_CableCheck_Timeout", None)
                self._deadlines["V2G_EVCC_PreCharge_Timeout"] = (
                    now + self.timers.V2G_EVCC_PreCharge_Timeout)
                return self._next(EvccState.PRE_CHARGE, self._pre_charge(ev), inputs, now)
            case EvccState.PRE_CHARGE:
                return self._on_pre_charge(res, ev, inputs, now)
            case EvccState.POWER_DELIVERY_START:
                self._deadlines.pop("V2G_EVCC_ReadyToCharge_Timeout", None)
                self.charge_started = now
                return self._next(EvccState.CURRENT_DEMAND, d.current_demand(ev), inputs, now)
            case EvccState.CURRENT_DEMAND:
                return self._on_current_demand(res, ev, inputs, now)
            case EvccState.POWER_DELIVERY_STOP:
                return self._next(EvccState.WELDING_DETECTION,
                                  d.welding_detection(_with(ev, ready=False)), inputs, now,
                                  self._open_sequence())
            case EvccState.WELDING_DETECTION:
                self.welding_count += 1
                voltage = _present(res, "EVSEPresentVoltage")
                low = voltage is not None and voltage < self.settings.welding_voltage
                if not low and self.welding_count < self.settings.welding_max_requests:
                    return self._repeat(d.welding_detection(_with(ev, ready=False)), inputs, now)
                if not low:
                    log.warning("welding detection ended without a low voltage",
                                requests=self.welding_count, voltage=voltage)
                return self._next(EvccState.SESSION_STOP, d.session_stop(), inputs, now)
            case EvccState.SESSION_STOP:
                self.finished = Finished(True, "SessionStopRes", {"evseid": self.evseid})
                self._enter(EvccState.FINISHED)
                return Step(EvccState.FINISHED, actions=[SetLock("unlock"), self.finished])
            case _:
                return self._shutdown(f"{name} in state {self.state.value}", now)

    def _on_pre_charge(self, res: Tree, ev: EvValues, inputs: EvInputs, now: float) -> Step:
        charger_voltage = _present(res, "EVSEPresentVoltage")
        actions: list[Action] = []
        if charger_voltage is not None:
            actions.append(PublishCharger({"charger_voltage": charger_voltage}))
        if inputs.stop_requested:
            return self._user_stop_before_charging(inputs, now, actions)
        inlet = self._inlet_voltage(inputs, charger_voltage)
        if inlet is None or abs(inlet - ev.battery_voltage) >= self.settings.precharge_delta:
            return self._repeat(self._pre_charge(ev), inputs, now, actions)
        log.info("precharge reached", inlet=inlet, battery=ev.battery_voltage,
                 delta=self.settings.precharge_delta)
        self._deadlines.pop("V2G_EVCC_PreCharge_Timeout", None)
        if not self.cp_c:
            actions.append(SetCp("C"))
            self.cp_c = True
        actions.append(SetRelay("on"))
        self.relay_on = True
        step = self._next(EvccState.POWER_DELIVERY_START,
                          self.dialect.power_delivery(ev, True, self.schedule_id), inputs, now,
                          actions, delay=self.settings.relay_settle_time)
        return step

    def _on_current_demand(self, res: Tree, ev: EvValues, inputs: EvInputs, now: float) -> Step:
        self.current_demand_count += 1
        actions: list[Action] = self._charger_values(res)
        reason = self._stop_reason(res, inputs, now)
        if reason:
            log.info("charging stops", reason=reason, cycles=self.current_demand_count)
            done = _with(ev, charging_complete=True, target_current=0.0)
            return self._next(EvccState.POWER_DELIVERY_STOP,
                              self.dialect.power_delivery(done, False, self.schedule_id),
                              inputs, now, actions)
        elapsed = now - self.last_sent if self.last_sent is not None else 0.0
        delay = max(0.0, self.settings.current_demand_cycle - elapsed)
        return self._next(EvccState.CURRENT_DEMAND, self.dialect.current_demand(ev), inputs, now,
                          actions, delay=delay)

    def _stop_reason(self, res: Tree, inputs: EvInputs, now: float) -> str:
        if inputs.stop_requested:
            return "user stop"
        soc = inputs.soc if inputs.soc is not None else self.settings.default_soc
        if soc >= self.settings.stop_soc:
            return f"target SoC {self.settings.stop_soc:g} % reached"
        limit = self.settings.max_charge_time
        if limit > 0 and self.charge_started is not None and now - self.charge_started >= limit:
            return f"charge time {limit:g} s reached"
        notification = (res.get("DC_EVSEStatus") or {}).get("EVSENotification")
        if notification == "StopCharging":
            return "charger asked to stop (EVSENotification StopCharging)"
        return ""

    def _user_stop_before_charging(self, inputs: EvInputs, now: float,
                                   actions: list[Action]) -> Step:
        log.info("user stop before charging", state=self.state.value)
        actions = [*actions, SetCp("B"), SetRelay("off")]
        return self._next(EvccState.SESSION_STOP, self.dialect.session_stop(), inputs, now,
                          actions)

    # ------------------------------------------------------------------ building steps
    def _ev(self, inputs: EvInputs) -> EvValues:
        s = self.settings
        soc = inputs.soc if inputs.soc is not None else s.default_soc
        battery = (inputs.battery_voltage if inputs.battery_voltage is not None
                   else s.default_battery_voltage)
        capacity = (inputs.battery_capacity if inputs.battery_capacity is not None
                    and inputs.battery_capacity > 0 else s.battery_capacity)
        target_v = inputs.target_voltage if inputs.target_voltage is not None else s.max_voltage
        target_i = (inputs.target_current if inputs.target_current is not None
                    else s.default_target_current)
        request = max(0.0, capacity * (s.stop_soc - soc) / 100.0)
        return EvValues(soc=soc, battery_voltage=battery,
                        target_voltage=min(target_v, s.max_voltage),
                        target_current=min(target_i, s.max_current),
                        max_voltage=s.max_voltage, max_current=s.max_current,
                        max_power=s.max_power, capacity_wh=capacity, energy_request_wh=request)

    def _pre_charge(self, ev: EvValues) -> Tree:
        return self.dialect.pre_charge(ev, ev.battery_voltage, self.settings.precharge_current)

    def _inlet_voltage(self, inputs: EvInputs, charger_voltage: float | None) -> float | None:
        source = self.settings.precharge_voltage_source
        if source == "inlet":
            return inputs.inlet_voltage
        if source == "charger":
            return charger_voltage
        return inputs.inlet_voltage if inputs.inlet_voltage is not None else charger_voltage

    def _charger_values(self, res: Tree) -> list[Action]:
        values: dict[str, float] = {}
        params = res.get("DC_EVSEChargeParameter") or {}
        for key, topic in (("EVSEMaximumVoltageLimit", "charger_max_voltage"),
                           ("EVSEMaximumCurrentLimit", "charger_max_current"),
                           ("EVSEPresentVoltage", "charger_voltage"),
                           ("EVSEPresentCurrent", "charger_current")):
            value = _present(res, key)
            if value is None:
                value = _present(params, key)
            if value is not None:
                values[topic] = value
        self.charger.update(values)
        return [PublishCharger(values)] if values else []

    def _open_sequence(self) -> list[Action]:
        self.cp_c = False
        self.relay_on = False
        return open_sequence(self.settings)

    def _message(self, body: Tree) -> Tree:
        session = self.session_id if self.session_id is not None else \
            self.dialect.initial_session_id
        return {"V2G_Message": {"Header": {"SessionID": session}, "Body": body}}

    def _send(self, state: EvccState, body: Tree, inputs: EvInputs, now: float,
              actions: list[Action] | None = None, delay: float = 0.0) -> Step:
        name = next(iter(body))
        request = name[:-3] if name.endswith("Req") else name
        timer = self.dialect.msg_timeout_name(request)
        timeout = float(getattr(self.timers, timer))
        send_at = now + delay
        for seq_timer, deadline in self._deadlines.items():
            left = deadline - send_at
            if left < timeout:
                timeout, timer = max(0.0, left), seq_timer
        self._enter(state)
        self._pending_name = request
        self._pending_timer = timer
        self.last_sent = send_at
        return Step(state, self._message(body), name, list(actions or []), delay, timeout, timer)

    def _next(self, state: EvccState, body: Tree, inputs: EvInputs, now: float,
              actions: list[Action] | None = None, delay: float = 0.0) -> Step:
        return self._send(state, body, inputs, now, actions, delay)

    def _repeat(self, body: Tree, inputs: EvInputs, now: float,
                actions: list[Action] | None = None) -> Step:
        return self._send(self.state, body, inputs, now, actions, self.settings.ongoing_repeat_delay)

    def _shutdown(self, reason: str, now: float) -> Step:
        if self.state in TERMINAL:
            return Step(self.state)
        log.warning("safe shutdown", reason=reason, state=self.state.value,
                    protocol=self.protocol)
        self.cp_c = False
        self.relay_on = False
        actions = safe_shutdown(self.settings, reason, {"state": self.state.value})
        finished = actions[-1]
        assert isinstance(finished, Finished)
        self.finished = finished
        self._enter(EvccState.SAFE_SHUTDOWN)
        return Step(EvccState.SAFE_SHUTDOWN, actions=actions)

    def _enter(self, state: EvccState) -> None:
        if state is not self.state:
            log.info("evcc state", protocol=self.protocol, old=self.state.value, new=state.value)
            self.state = state


def open_sequence(settings: EvccSettings) -> list[Action]:
    """CP B, current down, contactors open: the order that keeps the contacts from arcing."""
    return [SetCp("B"),
            AwaitCurrentBelow(settings.current_off_threshold, settings.current_off_timeout),
            SetRelay("off"), AwaitContactors("open", settings.contactor_timeout)]


def safe_shutdown(settings: EvccSettings, reason: str,
                  detail: dict[str, Any] | None = None) -> list[Action]:
    """The safe shutdown sequence: open as above, then unlock, then report the reason."""
    return [*open_sequence(settings), SetLock("unlock"), Finished(False, reason, detail or {})]


# ---------------------------------------------------------------------- tree helpers
def _with(ev: EvValues, **changes: Any) -> EvValues:
    values = {f.name: getattr(ev, f.name) for f in fields(ev)}
    values.update(changes)
    return EvValues(**values)


def _present(res: Tree, key: str) -> float | None:
    value = res.get(key)
    if not isinstance(value, dict):
        return None
    try:
        return to_float(value)
    except PhysicalValueError:
        return None


def _evse_status(res: Tree) -> str | None:
    for key in ("DC_EVSEStatus", "EVSEStatus"):
        status = res.get(key)
        if isinstance(status, dict) and "EVSEStatusCode" in status:
            return str(status["EVSEStatusCode"])
    params = res.get("DC_EVSEChargeParameter")
    if isinstance(params, dict):
        return _evse_status(params)
    return None


def _payment_options(res: Tree) -> list[str]:
    holder = res.get("PaymentOptionList") or res.get("PaymentOptions") or {}
    options = holder.get("PaymentOption") if isinstance(holder, dict) else None
    if isinstance(options, str):
        return [options]
    return [str(o) for o in options or []]


def _schedule_id(res: Tree, default: int) -> int:
    tuples = (res.get("SAScheduleList") or {}).get("SAScheduleTuple")
    if isinstance(tuples, dict):
        tuples = [tuples]
    if isinstance(tuples, list) and tuples and isinstance(tuples[0], dict):
        try:
            return int(tuples[0].get("SAScheduleTupleID", default))
        except (TypeError, ValueError):
            return default
    return default
