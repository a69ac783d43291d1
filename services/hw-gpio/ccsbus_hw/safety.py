"""The safety state machine: pure, clocked by `step(now, measurements)`, no I/O.

Requests (from v2g, the user or the service's own watchdog inputs) only record an intent; every
output change happens inside `step`, judged against the measurements of that same step, so the
recorded (measurements, outputs) pairs are enough to prove an invariant held:

* contactors open only with |current| below the threshold, or after `contactor_open_timeout` with a
  `forced_open` error event;
* the lock releases only with the contactors open (feedback too, where there is one) and the inlet
  voltage below `unlock_voltage`;
* contactors close only with the lock locked, and (PEV) the inlet voltage within `precharge_delta`
  of the battery / (EVSE) a valid isolation check or the isolation test itself with a car connected;
* after an autonomous shutdown nothing closes again until a fresh open request re-arms the machine.

Every refusal and every autonomous action is one `SafetyEvent`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from ccsbus.log import get_logger

from .settings import SafetySettings

_log = get_logger("hw.safety")


class Side(Enum):
    EVSE = "EVSE"
    PEV = "PEV"


class Contactor(Enum):
    OPEN = "open"
    CLOSED = "closed"
    OPENING = "opening"  # waiting for the current to fall


class Isolation(Enum):
    UNKNOWN = "unknown"
    ONGOING = "ongoing"
    VALID = "valid"
    WARNING = "warning"
    FAULT = "fault"


class Shutdown(Enum):
    """Steps of the safe shutdown sequence, in order."""

    IDLE = "idle"
    REDUCE = "reduce"              # PEV: CP state B / EVSE: supply current to zero
    WAIT_CURRENT = "wait_current"  # contactors opening once the current is below the threshold
    WAIT_VOLTAGE = "wait_voltage"  # lock held until the inlet voltage is below unlock_voltage
    DONE = "done"


class Cause(Enum):
    """Why a shutdown runs; the autonomous ones latch the machine."""

    COMMAND = "command"
    V2G_OFFLINE = "v2g_offline"
    BROKER_LOST = "broker_lost"
    STOP_BUTTON = "stop_button"
    ISOLATION_FAULT = "isolation_fault"
    CONTACTOR_FAULT = "contactor_fault"
    STARTUP = "startup_recovery"
    CP_LOST = "cp_lost"
    OVERVOLTAGE = "overvoltage"

    @property
    def autonomous(self) -> bool:
        return self is not Cause.COMMAND


@dataclass(frozen=True)
class Measurements:
    current: float = 0.0
    inlet_voltage: float = 0.0
    battery_voltage: float | None = None
    isolation: Isolation = Isolation.UNKNOWN
    contactor_feedback: bool | None = None  # None: the board has no feedback input
    lock_feedback: bool | None = None
    cp_state: str | None = None  # EVSE: the car's CP state as measured
    stop_button: bool = False
    voltage_limit: float | None = None  # EVSE: the supply's maximum output voltage


OVERVOLTAGE_FACTOR = 1.05  # output above the supply's own maximum by this much is a fault


@dataclass(frozen=True)
class Outputs:
    contactor: Contactor = Contactor.OPEN
    lock: bool = False
    cp: str = "B"            # PEV: CP switch state (A/B/C)
    pwm: float = 100.0       # EVSE: CP duty in % (100 = no PWM)
    supply_enabled: bool = False  # EVSE: the supply may follow the car's current request
    cable_check: bool = False     # EVSE: isolation test running (supply at test voltage)

    @property
    def contactors_closed(self) -> bool:
        return self.contactor is not Contactor.OPEN


@dataclass(frozen=True)
class SafetyEvent:
    event: str
    reason: str
    time: float
    step: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def as_payload(self, wall_time: float) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.event, "reason": self.reason, "time": wall_time}
        if self.step is not None:
            out["step"] = self.step
        for key, value in self.data.items():
            if isinstance(value, float):  # JSON has no infinity: unknown becomes null
                value = round(value, 3) if math.isfinite(value) else None
            out[key] = value
        return out


class Req(Enum):
    CONTACTORS = "contactors"
    LOCK = "lock"
    CP = "cp"
    PWM = "pwm"
    CABLE_CHECK = "cable_check"
    SAFE_SHUTDOWN = "safe_shutdown"


@dataclass(frozen=True)
class Request:
    kind: Req
    value: Any = None


_CAR_CONNECTED = ("B", "C", "D")


class SafetyMachine:
    def __init__(self, side: Side, settings: SafetySettings) -> None:
        self.side = side
        self.cfg = settings
        self.out = Outputs()
        self.shutdown = Shutdown.IDLE
        self.cause: Cause | None = None
        self.latched = False
        self.v2g_offline = False
        self.broker_up = True
        self.broker_down_since: float | None = None
        self.opening_since: float | None = None
        self.close_pending_since: float | None = None
        self.cable_check_pending = False
        self.cable_check_seen_ongoing = False
        self.cable_check_since = 0.0
        self.unlock_pending = False
        self.events: list[SafetyEvent] = []
        self._requests: deque[Request] = deque()
        self._feedback_mismatch_since: float | None = None
        self._last_isolation = Isolation.UNKNOWN
        self.meas = Measurements()
        # EVSE: the car has been in C/D during this closing of the contactors; a return to B then
        # means "no more energy" (IEC 61851), whatever the V2G messages say or whether v2g lives
        self._car_was_ready = False

    # ------------------------------------------------------------------ inputs (recorded only)
    def request(self, req: Request) -> None:
        self._requests.append(req)

    def request_contactors(self, close: bool) -> None:
        self.request(Request(Req.CONTACTORS, close))

    def request_lock(self, lock: bool) -> None:
        self.request(Request(Req.LOCK, lock))

    def request_cp(self, state: str) -> None:
        self.request(Request(Req.CP, state))

    def request_pwm(self, duty: float) -> None:
        self.request(Request(Req.PWM, duty))

    def request_cable_check(self) -> None:
        self.request(Request(Req.CABLE_CHECK))

    def request_safe_shutdown(self) -> None:
        self.request(Request(Req.SAFE_SHUTDOWN))

    def set_v2g_online(self, online: bool) -> None:
        self.v2g_offline = not online

    def set_broker_up(self, now: float, up: bool) -> None:
        if up:
            self.broker_down_since = None
        elif self.broker_up:
            self.broker_down_since = now
        self.broker_up = up

    def recover(self, now: float, meas: Measurements) -> None:
        """At start: if the wires show energy (a restart mid-charge), assume closed and locked and
        run the shutdown sequence instead of dropping everything at once."""
        # only what is known counts: an input not read yet (inf) is no evidence either way
        live = (self.cfg.current_threshold <= abs(meas.current) < math.inf
                or self.cfg.unlock_voltage <= meas.inlet_voltage < math.inf
                or bool(meas.contactor_feedback))
        if meas.lock_feedback and not live:
            # locked from before, nothing live: keep it so an unlock request releases it properly
            self.out = replace(self.out, lock=True)
        if not live:
            return
        self.out = replace(self.out, contactor=Contactor.CLOSED, lock=True)
        self._start_shutdown(now, Cause.STARTUP,
                             f"energy on the wires at start (current {meas.current:.1f} A, "
                             f"inlet {meas.inlet_voltage:.1f} V)")

    # ------------------------------------------------------------------ the clock
    def step(self, now: float, meas: Measurements) -> Outputs:
        self.meas = meas
        self._watchdogs(now, meas)
        while self._requests:
            self._handle(now, self._requests.popleft(), meas)
        self._run_shutdown(now, meas)
        self._run_close_pending(now, meas)
        self._run_opening(now, meas)
        self._run_cable_check(now, meas)
        self._run_unlock(now, meas)
        self._supervise_feedback(now, meas)
        supply = (self.side is Side.EVSE and self.out.contactor is Contactor.CLOSED
                  and self.shutdown in (Shutdown.IDLE, Shutdown.DONE)
                  and meas.isolation is Isolation.VALID and not self.out.cable_check
                  and not self._car_left_state_c(now, meas))
        if supply != self.out.supply_enabled:
            self.out = replace(self.out, supply_enabled=supply)
        return self.out

    def _car_left_state_c(self, now: float, meas: Measurements) -> bool:
        if self.side is not Side.EVSE or not self.out.contactors_closed:
            self._car_was_ready = False
            return False
        if meas.cp_state in ("C", "D"):
            self._car_was_ready = True
            return False
        if self._car_was_ready and meas.cp_state == "B":
            if self.out.supply_enabled:
                self._emit(now, "autonomous", "car switched CP from C to B: supply current to zero",
                           step="supply_off")
            return True
        return False

    def drain_events(self) -> list[SafetyEvent]:
        events, self.events = self.events, []
        return events

    @property
    def shutdown_active(self) -> bool:
        return self.shutdown not in (Shutdown.IDLE, Shutdown.DONE)

    # ------------------------------------------------------------------ watchdogs
    def _energy_flowing(self) -> bool:
        return self.out.contactors_closed or self.out.cable_check

    def _watchdogs(self, now: float, meas: Measurements) -> None:
        if self.shutdown_active:
            if self.v2g_offline and not self.latched:
                # a commanded shutdown whose commander died: stale requests must not re-arm it
                self.latched = True
            return
        if self.v2g_offline and (self._energy_flowing() or self.out.lock
                                 or (self.side is Side.PEV and self.out.cp == "C")):
            self._start_shutdown(now, Cause.V2G_OFFLINE, "v2g/status went offline")
        elif (self.broker_down_since is not None and self._energy_flowing()
              and now - self.broker_down_since >= self.cfg.broker_loss_timeout):
            self._start_shutdown(now, Cause.BROKER_LOST,
                                 f"broker unreachable for {now - self.broker_down_since:.2f} s")
        elif (self.side is Side.EVSE and meas.cp_state in ("A", "E", "F")
              and self._energy_flowing()):
            self._start_shutdown(now, Cause.CP_LOST, f"CP state {meas.cp_state} while energy flows")
        elif (self.side is Side.EVSE and meas.voltage_limit is not None and self._energy_flowing()
              and math.isfinite(meas.inlet_voltage)
              and meas.inlet_voltage > meas.voltage_limit * OVERVOLTAGE_FACTOR):
            self._start_shutdown(now, Cause.OVERVOLTAGE,
                                 f"output {meas.inlet_voltage:.1f} V above the supply maximum "
                                 f"{meas.voltage_limit:g} V")
        elif meas.stop_button and (self._energy_flowing() or self.out.lock):
            self._start_shutdown(now, Cause.STOP_BUTTON, "stop button pressed")
        elif (meas.isolation is Isolation.FAULT and self._last_isolation is not Isolation.FAULT
              and self._energy_flowing()):
            self._start_shutdown(now, Cause.ISOLATION_FAULT, "isolation check reports a fault")
        self._last_isolation = meas.isolation

    # ------------------------------------------------------------------ requests
    def _refuse(self, now: float, what: str, reason: str, **data: Any) -> None:
        self._emit(now, "refused", reason, request=what, **data)

    def _emit(self, now: float, event: str, reason: str, step: str | None = None,
              **data: Any) -> None:
        ev = SafetyEvent(event, reason, now, step, data)
        _log.info("safety event", kind=event, reason=reason, step=step, **data)
        self.events.append(ev)

    def _blocked(self) -> str | None:
        if self.shutdown_active:
            return f"safe shutdown running ({self.cause.value if self.cause else 'command'})"
        if self.latched:
            return "latched after an autonomous shutdown; an open request re-arms"
        if self.v2g_offline:
            return "v2g service is offline"
        if not self.broker_up:
            return "broker connection lost"
        return None

    def _handle(self, now: float, req: Request, meas: Measurements) -> None:
        match req.kind:
            case Req.CONTACTORS if req.value:
                self._close(now, meas)
            case Req.CONTACTORS:
                self._rearm(now)
                self._begin_opening(now)
            case Req.LOCK if req.value:
                if self.shutdown_active or self.latched:
                    # a stale lock request must not keep the cable captive after a shutdown
                    self._refuse(now, "lock", self._blocked() or "safe shutdown running")
                    return
                if not self.out.lock:
                    self.out = replace(self.out, lock=True)
                self.unlock_pending = False
            case Req.LOCK:
                if self.out.lock and not self.unlock_pending:
                    reason = self._unlock_blocker(meas)
                    if reason is not None:
                        self._emit(now, "deferred", f"unlock waits: {reason}", request="unlock")
                    self.unlock_pending = True
            case Req.CP:
                state = str(req.value)
                if state == "C":
                    blocked = self._blocked()
                    if blocked is not None:
                        self._refuse(now, "cp C", blocked)
                        return
                elif state == "A" and self.out.contactors_closed:
                    self._refuse(now, "cp A", "contactors are closed")
                    return
                self.out = replace(self.out, cp=state)
            case Req.PWM:
                self.out = replace(self.out, pwm=float(req.value))
            case Req.CABLE_CHECK:
                self._rearm(now)
                blocked = self._blocked()
                if blocked is not None:
                    self._refuse(now, "cable_check", blocked)
                    return
                self.cable_check_pending = True
                self.cable_check_since = now
                if not self.out.lock:
                    self.out = replace(self.out, lock=True)
                    self._emit(now, "autonomous", "lock before the isolation check", step="lock")
            case Req.SAFE_SHUTDOWN:
                if not self.shutdown_active:
                    self._start_shutdown(now, Cause.COMMAND, "safe_shutdown requested")

    def _rearm(self, now: float) -> None:
        if self.latched and not self.shutdown_active and not self.v2g_offline and self.broker_up:
            self.latched = False
            self._emit(now, "rearmed", "fresh open request after the autonomous shutdown")

    def _lock_holds(self, meas: Measurements) -> bool:
        if not self.out.lock:
            return False
        return meas.lock_feedback is None or meas.lock_feedback

    def _close_blocker(self, meas: Measurements, cable_check: bool = False) -> str | None:
        blocked = self._blocked()
        if blocked is not None:
            return blocked
        if self.cfg.require_lock and not self._lock_holds(meas):
            return "connector lock is not locked"
        if self.side is Side.PEV:
            if meas.battery_voltage is None:
                return "battery voltage unknown"
            delta = abs(meas.inlet_voltage - meas.battery_voltage)
            if delta > self.cfg.precharge_delta:
                return (f"inlet {meas.inlet_voltage:.1f} V differs from battery "
                        f"{meas.battery_voltage:.1f} V by more than {self.cfg.precharge_delta:g} V")
            return None
        if cable_check:
            if meas.cp_state not in _CAR_CONNECTED:
                return f"no car connected (CP state {meas.cp_state})"
            return None
        if meas.isolation is not Isolation.VALID:
            return f"isolation check not valid ({meas.isolation.value})"
        return None

    def _close(self, now: float, meas: Measurements) -> None:
        if self.out.contactor is Contactor.CLOSED:
            return
        if self.out.contactor is Contactor.OPENING:
            # still physically closed: taking back the open request changes nothing on the wires
            if self._blocked() is None:
                self.out = replace(self.out, contactor=Contactor.CLOSED)
                self.opening_since = None
            else:
                self._refuse(now, "contactors close", self._blocked() or "")
            return
        blocked = self._blocked()
        if blocked is not None:
            self._refuse(now, "contactors close", blocked)
            return
        if self.close_pending_since is None:
            self.close_pending_since = now
        self._run_close_pending(now, meas)

    def _run_close_pending(self, now: float, meas: Measurements) -> None:
        """A close request waits up to `close_wait` for its conditions (the requester saw them
        over MQTT, a little earlier than this measurement); it closes the moment they hold."""
        since = self.close_pending_since
        if since is None:
            return
        blocked = self._blocked()
        if blocked is not None:
            self.close_pending_since = None
            self._refuse(now, "contactors close", blocked)
            return
        reason = self._close_blocker(meas)
        if reason is None:
            self.close_pending_since = None
            self.out = replace(self.out, contactor=Contactor.CLOSED)
            self.unlock_pending = False
        elif now - since >= self.cfg.close_wait:
            self.close_pending_since = None
            self._refuse(now, "contactors close", reason, inlet_voltage=meas.inlet_voltage,
                         battery_voltage=meas.battery_voltage, isolation=meas.isolation.value)

    def _begin_opening(self, now: float) -> None:
        self.close_pending_since = None
        if self.out.cable_check:
            self.out = replace(self.out, cable_check=False)
        self.cable_check_pending = False
        if self.out.contactor is Contactor.CLOSED:
            self.out = replace(self.out, contactor=Contactor.OPENING)
            self.opening_since = now

    # ------------------------------------------------------------------ sequences
    def _start_shutdown(self, now: float, cause: Cause, reason: str) -> None:
        self.cause = cause
        self.shutdown = Shutdown.REDUCE
        if cause.autonomous:
            self.latched = True
        self._emit(now, "shutdown", reason, step="start", cause=cause.value)

    def _run_shutdown(self, now: float, meas: Measurements) -> None:
        match self.shutdown:
            case Shutdown.IDLE | Shutdown.DONE:
                return
            case Shutdown.REDUCE:
                if self.side is Side.PEV:
                    if self.out.cp == "C":
                        self.out = replace(self.out, cp="B")
                    self._emit(now, "shutdown", "CP state B", step="cp_b", current=meas.current)
                else:
                    self._emit(now, "shutdown", "supply current to zero", step="supply_off",
                               current=meas.current)
                self.unlock_pending = True
                self._begin_opening(now)
                self.shutdown = Shutdown.WAIT_CURRENT
                self._run_shutdown(now, meas)
            case Shutdown.WAIT_CURRENT:
                if self.out.contactor is Contactor.OPEN:
                    self.shutdown = Shutdown.WAIT_VOLTAGE
                    self._run_shutdown(now, meas)
            case Shutdown.WAIT_VOLTAGE:
                if not self.out.lock and not self.unlock_pending:
                    self.shutdown = Shutdown.DONE
                    self._emit(now, "shutdown", "sequence complete", step="done",
                               cause=self.cause.value if self.cause else None)

    def _run_opening(self, now: float, meas: Measurements) -> None:
        if self.out.contactor is not Contactor.OPENING:
            return
        since = self.opening_since if self.opening_since is not None else now
        if abs(meas.current) < self.cfg.current_threshold:
            self.out = replace(self.out, contactor=Contactor.OPEN)
            self.opening_since = None
            if self.shutdown_active:
                self._emit(now, "shutdown", "contactors open", step="contactors_open",
                           current=meas.current)
        elif now - since >= self.cfg.contactor_open_timeout:
            self.out = replace(self.out, contactor=Contactor.OPEN)
            self.opening_since = None
            self._emit(now, "forced_open",
                       f"current {meas.current:.1f} A still above {self.cfg.current_threshold:g} A "
                       f"after {now - since:.2f} s", step="contactors_open", current=meas.current,
                       waited=round(now - since, 3))
        self._run_shutdown(now, meas)

    def _run_cable_check(self, now: float, meas: Measurements) -> None:
        if self.side is not Side.EVSE:
            return
        if (self.cable_check_pending and not self._lock_holds(meas)
                and now - self.cable_check_since >= self.cfg.feedback_timeout):
            self.cable_check_pending = False
            self._refuse(now, "cable_check", "the connector lock did not report locked")
            return
        if self.cable_check_pending and self._lock_holds(meas):
            self.cable_check_pending = False
            if self.out.contactor is Contactor.CLOSED:
                self.out = replace(self.out, cable_check=True)
                self.cable_check_seen_ongoing = False
                return
            reason = self._close_blocker(meas, cable_check=True)
            if reason is not None:
                self._refuse(now, "cable_check", reason)
                return
            self.out = replace(self.out, contactor=Contactor.CLOSED, cable_check=True)
            self.cable_check_seen_ongoing = False
            return
        if not self.out.cable_check:
            return
        if meas.isolation is Isolation.ONGOING:
            self.cable_check_seen_ongoing = True
        elif self.cable_check_seen_ongoing and meas.isolation is not Isolation.UNKNOWN:
            self.out = replace(self.out, cable_check=False)
            if meas.isolation is not Isolation.VALID:
                self._emit(now, "isolation", f"isolation check finished: {meas.isolation.value}",
                           isolation=meas.isolation.value)

    def _unlock_blocker(self, meas: Measurements) -> str | None:
        if self.out.contactor is not Contactor.OPEN:
            return f"contactors {self.out.contactor.value}"
        if meas.contactor_feedback:
            return "contactor feedback still closed"
        if meas.inlet_voltage >= self.cfg.unlock_voltage:
            return f"inlet voltage {meas.inlet_voltage:.1f} V >= {self.cfg.unlock_voltage:g} V"
        return None

    def _run_unlock(self, now: float, meas: Measurements) -> None:
        if not self.unlock_pending:
            return
        if not self.out.lock:
            self.unlock_pending = False
            self._run_shutdown(now, meas)
            return
        if self._unlock_blocker(meas) is None:
            self.out = replace(self.out, lock=False)
            self.unlock_pending = False
            if self.shutdown_active:
                self._emit(now, "shutdown", "lock released", step="unlocked",
                           inlet_voltage=meas.inlet_voltage)
            self._run_shutdown(now, meas)

    def _supervise_feedback(self, now: float, meas: Measurements) -> None:
        if meas.contactor_feedback is None:
            return
        commanded = self.out.contactors_closed
        if meas.contactor_feedback == commanded:
            self._feedback_mismatch_since = None
            return
        if self._feedback_mismatch_since is None:
            self._feedback_mismatch_since = now
            return
        if now - self._feedback_mismatch_since < self.cfg.feedback_timeout:
            return
        self._feedback_mismatch_since = now  # one event per timeout period
        if commanded:
            self._emit(now, "contactor_fault", "contactor commanded closed but feedback open")
            if not self.shutdown_active:
                self._start_shutdown(now, Cause.CONTACTOR_FAULT, "contactor did not close")
        else:
            self._emit(now, "contactor_fault",
                       "contactor commanded open but feedback closed (welded?); lock held")
