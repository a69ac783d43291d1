"""The bridge logic between topics and CAN frames, without any I/O.

`ChademoBridge` (PEV stack): we are the CCS car side towards the public charger and play the CHAdeMO
charger towards the car. The car's frames become the topics the v2g service reads (target voltage,
current request, SoC, capacity); the CCS charger's limits and present values become 0x108/0x109.
`BoardBridge` (EVSE stack): the FoccciCape board frames from the session topics.

Both take inputs (`on_topic`, `on_frame`) and a clock (`tick(now)`) and return what to do as
`Publish` / `Send` values, so the timing rules are tested without a bus.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from . import board, chademo
from .chademo import Clamp, FrameError, VehicleStatus


@dataclass(frozen=True)
class Publish:
    path: str
    value: Any


@dataclass(frozen=True)
class Send:
    can_id: int
    data: bytes


@dataclass(frozen=True)
class Reject:
    """A frame that could not be decoded; the service reports it on its error topic."""

    reason: str
    can_id: int
    data: bytes


Output = Publish | Send | Reject


class BatteryVoltageSource(Enum):
    """CHAdeMO carries no present battery voltage; which vehicle value stands in for it."""

    TARGET_VOLTAGE = "target_voltage"
    MAX_BATTERY_VOLTAGE = "max_battery_voltage"
    NONE = "none"


@dataclass(frozen=True)
class ChademoParams:
    cycle: float = 0.1  # CHAdeMO's 100 ms frame cycle
    vehicle_timeout: float = 1.0  # a car silent this long has gone: current 0 and stop
    protocol: int = 2
    welding_detection: bool = True
    threshold_voltage: float = 500.0  # used until the car's 0x100 names its maximum
    battery_voltage_source: BatteryVoltageSource = BatteryVoltageSource.TARGET_VOLTAGE
    state_interval: float = 1.0  # can/state at least this often while something changes


# a tick this close before the cycle deadline sends now rather than one sleep later
_EARLY = 0.0005

# contract ranges of the topics fed from vehicle frames (config/topics.yaml)
_TOPIC_MAX = {"target_voltage": 1500, "battery_voltage": 1500, "target_current": 1000, "soc": 100}


class _ClampReporter:
    """One `clamped` event per field and episode: reported when a value starts not to fit."""

    def __init__(self) -> None:
        self.active: set[str] = set()

    def update(self, clamps: list[Clamp], fields: tuple[str, ...], now: float) -> list[Output]:
        out: list[Output] = []
        seen = {c.field for c in clamps}
        for clamp in clamps:
            if clamp.field not in self.active:
                self.active.add(clamp.field)
                out.append(Publish("can/event", {
                    "event": "clamped", "field": clamp.field, "value": clamp.value, "sent": clamp.sent,
                    "reason": f"{clamp.field} {clamp.value:g} does not fit its frame field; "
                              f"sent {clamp.sent}", "time": now}))
        self.active -= {f for f in fields if f not in seen}
        return out


@dataclass
class _Vehicle:
    limits: chademo.VehicleLimits | None = None
    times: chademo.VehicleTimes | None = None
    request: chademo.VehicleRequest | None = None
    last_seen: float | None = None
    present: bool = False


@dataclass
class ChademoBridge:
    params: ChademoParams = field(default_factory=ChademoParams)
    vehicle: _Vehicle = field(default_factory=_Vehicle)
    charger_max_voltage: float = 0.0
    charger_max_current: float = 0.0
    charger_voltage: float = 0.0
    charger_current: float = 0.0
    relay_on: bool = False
    locked: bool = False
    stop_reason: str | None = None
    frames_rx: int = 0
    frames_tx: int = 0
    _published: dict[str, Any] = field(default_factory=dict)
    _clamps: _ClampReporter = field(default_factory=_ClampReporter)
    _bad_ids: set[int] = field(default_factory=set)
    _next_cycle: float | None = None
    _last_state: dict[str, Any] | None = None
    _last_state_time: float = 0.0

    # ------------------------------------------------------------------ inputs
    def on_topic(self, path: str, value: Any) -> None:
        match path:
            case "charger_max_voltage":
                self.charger_max_voltage = float(value)
            case "charger_max_current":
                self.charger_max_current = float(value)
            case "charger_voltage":
                self.charger_voltage = float(value)
            case "charger_current":
                self.charger_current = float(value)
            case "relay_request":
                self.relay_on = value == "on"
            case "lock_request":
                self.locked = value == "lock"

    def on_frame(self, can_id: int, data: bytes, now: float) -> list[Output]:
        if can_id not in chademo.VEHICLE_IDS:
            return []
        try:
            match can_id:
                case chademo.VEHICLE_LIMITS_ID:
                    self.vehicle.limits = chademo.decode_vehicle_limits(data)
                case chademo.VEHICLE_TIMES_ID:
                    self.vehicle.times = chademo.decode_vehicle_times(data)
                case _:
                    self.vehicle.request = chademo.decode_vehicle_request(data)
        except FrameError as exc:
            if can_id in self._bad_ids:
                return []
            self._bad_ids.add(can_id)  # one report per bad episode, not ten a second
            return [Reject(str(exc), can_id, data)]
        self._bad_ids.discard(can_id)
        self.frames_rx += 1
        out: list[Output] = []
        self.vehicle.last_seen = now
        if not self.vehicle.present:
            self.vehicle.present = True
            out.append(Publish("can/event", {"event": "vehicle_present", "time": now}))
        if can_id == chademo.VEHICLE_REQUEST_ID:
            out += self._vehicle_checks(now)
        out += self._vehicle_topics(now)
        return out

    # ------------------------------------------------------------------ clock
    def tick(self, now: float) -> list[Output]:
        """Call often (at least every cycle); sends the charger frames on the CHAdeMO cycle."""
        out: list[Output] = []
        seen = self.vehicle.last_seen
        if self.vehicle.present and seen is not None and now - seen >= self.params.vehicle_timeout:
            self.vehicle.present = False
            self.vehicle.request = None  # stale: a returning car must ask again
            out.append(Publish("can/event", {
                "event": "vehicle_lost", "time": now,
                "reason": f"no vehicle frame for {now - seen:.2f} s"}))
            out += self._request_stop("vehicle silent", now)
            out += self._publish_changed("target_current", 0)
        if self._next_cycle is None or now >= self._next_cycle - _EARLY:
            # keep the cycle's phase; after a stall, restart from now rather than send a burst
            base = self._next_cycle if self._next_cycle is not None else now
            self._next_cycle = base + self.params.cycle
            if self._next_cycle <= now:
                self._next_cycle = now + self.params.cycle
            out += self._charger_frames(now)
        out += self._state(now)
        return out

    def next_deadline(self) -> float:
        return self._next_cycle if self._next_cycle is not None else time.monotonic()

    # ------------------------------------------------------------------ helpers
    def _vehicle_checks(self, now: float) -> list[Output]:
        request = self.vehicle.request
        if request is None:
            return []
        faults = chademo.flag_names(request.faults)
        if request.status & VehicleStatus.CHARGING_SYSTEM_FAULT:
            faults.append("charging_system_fault")
        if faults:
            if self.stop_reason is None:
                return [Publish("can/event", {"event": "vehicle_fault", "reason": ", ".join(faults),
                                              "time": now}),
                        *self._request_stop("vehicle fault: " + ", ".join(faults), now)]
            return []
        if self.stop_reason is not None and request.status & VehicleStatus.CHARGING_ENABLED:
            # the car is back (or its fault cleared) and asks for charge again: a new episode
            self.stop_reason = None
        return []

    def _request_stop(self, reason: str, now: float) -> list[Output]:
        if self.stop_reason is not None:
            return []
        self.stop_reason = reason
        return [Publish("can/event", {"event": "stop_requested", "reason": reason, "time": now}),
                Publish("v2g/cmd", {"cmd": "stop", "value": reason})]

    def _vehicle_topics(self, now: float) -> list[Output]:
        out: list[Output] = []
        clamps: list[Clamp] = []
        values: dict[str, float] = {}
        request, limits, times = self.vehicle.request, self.vehicle.limits, self.vehicle.times
        if request is not None:
            values["target_voltage"] = request.target_voltage
            values["target_current"] = 0 if self.stop_reason else request.current_request
            reference = limits.charged_rate_reference if limits is not None else 100
            values["soc"] = request.charged_rate * 100 / reference if reference else request.charged_rate
        source = self.params.battery_voltage_source
        if source is BatteryVoltageSource.TARGET_VOLTAGE and request is not None:
            values["battery_voltage"] = request.target_voltage
        elif source is BatteryVoltageSource.MAX_BATTERY_VOLTAGE and limits is not None:
            values["battery_voltage"] = limits.max_battery_voltage
        for name, value in values.items():
            top = _TOPIC_MAX[name]
            if value > top:
                clamps.append(Clamp(name, value, top))
                value = top
            out += self._publish_changed(name, round(value, 1))
        if times is not None and times.battery_capacity_wh is not None:
            out += self._publish_changed("battery_capacity", min(times.battery_capacity_wh, 1_000_000))
        out += self._clamps.update(clamps, tuple(_TOPIC_MAX), now)
        return out

    def _publish_changed(self, path: str, value: Any) -> list[Output]:
        if self._published.get(path) == value:
            return []
        self._published[path] = value
        return [Publish(path, value)]

    def _charger_frames(self, now: float) -> list[Output]:
        limits = self.vehicle.limits
        threshold = limits.max_battery_voltage if limits else self.params.threshold_voltage
        status = chademo.ChargerStatus(0)
        if self.relay_on and self.stop_reason is None:
            status |= chademo.ChargerStatus.ENERGIZING
        if self.locked:
            status |= chademo.ChargerStatus.CONNECTOR_LOCKED
        if self.stop_reason is not None:
            status |= chademo.ChargerStatus.STOP_CONTROL
        first = chademo.encode_charger_limits(chademo.ChargerLimits(
            welding_detection=self.params.welding_detection,
            available_voltage=self.charger_max_voltage,
            available_current=self.charger_max_current,
            threshold_voltage=threshold))
        second = chademo.encode_charger_state(chademo.ChargerState(
            protocol=self.params.protocol, present_voltage=self.charger_voltage,
            present_current=self.charger_current, status=status, remaining_time_s=None))
        self.frames_tx += 2
        out: list[Output] = [Send(chademo.CHARGER_LIMITS_ID, first.data),
                             Send(chademo.CHARGER_STATUS_ID, second.data)]
        out += self._clamps.update(first.clamps + second.clamps,
                                   ("available_voltage", "available_current", "threshold_voltage",
                                    "present_voltage", "present_current", "protocol"), now)
        return out

    def state(self, now: float) -> dict[str, Any]:
        request, limits, times = self.vehicle.request, self.vehicle.limits, self.vehicle.times
        vehicle: dict[str, Any] | None = None
        if request or limits or times:
            vehicle = {}
            if limits is not None:
                vehicle.update(max_battery_voltage=limits.max_battery_voltage,
                               charged_rate_reference=limits.charged_rate_reference)
            if times is not None:
                vehicle.update(max_charging_time_s=times.max_charging_time_s,
                               estimated_charging_time_min=times.estimated_charging_time_min,
                               battery_capacity_wh=times.battery_capacity_wh)
            if request is not None:
                vehicle.update(protocol=request.protocol, target_voltage=request.target_voltage,
                               current_request=request.current_request,
                               charged_rate=request.charged_rate)
        faults = chademo.flag_names(request.faults) if request else []
        status = chademo.flag_names(request.status) if request else []
        return {"profiles": ["chademo"], "vehicle_present": self.vehicle.present, "vehicle": vehicle,
                "faults": faults, "status": status, "stop_requested": self.stop_reason is not None,
                "stop_reason": self.stop_reason, "frames_rx": self.frames_rx,
                "frames_tx": self.frames_tx, "time": now}

    def _state(self, now: float) -> list[Output]:
        """can/state on every significant change, and as a heartbeat every `state_interval`."""
        current = self.state(now)
        significant = {k: v for k, v in current.items() if k not in ("frames_rx", "frames_tx", "time")}
        if significant == self._last_state and now - self._last_state_time < self.params.state_interval:
            return []
        self._last_state = significant
        self._last_state_time = now
        return [Publish("can/state", current)]


# ---------------------------------------------------------------------------- board profile
@dataclass
class BoardBridge:
    """EVSE stack: FoccciCape frames from the session topics, one set per cycle."""

    cycle: float = 0.1
    soc: float | None = None
    target_voltage: float = 0.0
    target_current: float = 0.0
    present_voltage: float = 0.0
    present_current: float = 0.0
    evccid: str | None = None
    enabled: bool = True
    session_active: bool = False
    log_index: int = 0
    cycles: int = 0
    frames_tx: int = 0
    _clamps: _ClampReporter = field(default_factory=_ClampReporter)
    _next_cycle: float | None = None

    def on_topic(self, path: str, value: Any) -> None:
        match path:
            case "soc":
                self.soc = None if value < 0 else float(value)
            case "target_voltage":
                self.target_voltage = float(value)
            case "target_current":
                self.target_current = float(value)
            case "charger_voltage":
                self.present_voltage = float(value)
            case "charger_current":
                self.present_current = float(value)
            case "evccid":
                text = str(value).strip() or None
                if text != self.evccid and text is not None:
                    self.log_index = (self.log_index + 1) & 0xFFFF  # a new car: a new log
                self.evccid = text
            case "enabled":
                self.enabled = value != 0
            case "v2g/session":
                self.session_active = bool(value.get("session_id"))

    def tick(self, now: float) -> list[Output]:
        if self._next_cycle is not None and now < self._next_cycle - _EARLY:
            return []
        base = self._next_cycle if self._next_cycle is not None else now
        self._next_cycle = base + self.cycle
        if self._next_cycle <= now:
            self._next_cycle = now + self.cycle
        info = board.BoardInfo(0)
        if self.session_active:
            info |= board.BoardInfo.SESSION_ACTIVE
        if self.present_current > 1.0:
            info |= board.BoardInfo.POWER_FLOWING
        if self.enabled:
            info |= board.BoardInfo.CHARGING_ENABLED
        first = board.encode_info(info, self.soc)
        second = board.encode_values(board.BoardValues(self.target_voltage, self.target_current,
                                                       self.present_voltage, self.present_current))
        out: list[Output] = [Send(board.INFO_ID, first.data), Send(board.VALUES_ID, second.data)]
        if self.cycles % board.MAC_EVERY == 0:
            out.append(Send(board.MAC_ID, board.encode_mac(self.evccid, self.log_index).data))
        self.cycles += 1
        self.frames_tx += len(out)
        out += self._clamps.update(first.clamps + second.clamps,
                                   ("soc", "target_voltage", "target_current", "present_voltage",
                                    "present_current"), now)
        return out

    def next_deadline(self) -> float:
        return self._next_cycle if self._next_cycle is not None else time.monotonic()
