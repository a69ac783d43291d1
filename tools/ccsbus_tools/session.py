"""What happened in one simulated session, built from the topics both stacks publish. Pure: no I/O.

`SessionRecorder.feed(side, path, value, t)` takes every decoded message of the EVSE and the PEV stack;
the recorder keeps the present values (voltages, currents, SoC), the V2G messages with their
latencies, and the phase timeline (plug-in, SLAC, SDP, the V2G phases, unplug). `to_json()` is the
session log `ccsbus plot` reads.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

LOG_VERSION = 1


class Phase(Enum):
    """The phases of a DC session in the order they must happen."""

    PLUG_IN = "plug-in"
    SLAC = "slac"
    SDP = "sdp"
    SETUP = "session-setup"          # supportedAppProtocol .. ChargeParameterDiscovery
    CABLE_CHECK = "cable-check"
    PRE_CHARGE = "pre-charge"
    CHARGING = "charging"            # PowerDelivery(start) + CurrentDemand loop
    POWER_OFF = "power-off"          # PowerDelivery(stop)
    WELDING = "welding-detection"
    SESSION_STOP = "session-stop"
    UNPLUG = "unplug"


PHASE_ORDER = list(Phase)

# V2G message name (Req/Res suffix removed, lower case) -> the phase its request opens
_MESSAGE_PHASE = {
    "supportedappprotocol": Phase.SETUP,
    "sessionsetup": Phase.SETUP,
    "cablecheck": Phase.CABLE_CHECK,
    "precharge": Phase.PRE_CHARGE,
    "currentdemand": Phase.CHARGING,
    "weldingdetection": Phase.WELDING,
    "sessionstop": Phase.SESSION_STOP,
}


def message_base(name: str) -> str:
    """`CableCheckReq` / `cable_check_res` / `din:CableCheckReq` -> `cablecheck`."""
    base = name.rsplit(":", 1)[-1].replace("_", "").lower()
    return re.sub(r"(req|res|request|response)$", "", base)


def is_request(name: str) -> bool:
    return bool(re.search(r"(req|request)$", name.replace("_", "").lower()))


@dataclass
class PhaseSpan:
    phase: str
    start: float
    end: float | None = None


@dataclass
class Sample:
    t: float
    evse_voltage: float | None = None
    evse_current: float | None = None
    inlet_voltage: float | None = None
    battery_voltage: float | None = None
    soc: float | None = None
    target_voltage: float | None = None
    target_current: float | None = None


@dataclass
class Message:
    t: float
    side: str
    direction: str
    name: str
    protocol: str | None
    latency_ms: float | None


@dataclass
class SessionRecorder:
    """Feeds on both stacks' topics; `side` is `EVSE` or `PEV`; `t` seconds since the start."""

    protocol: str = ""
    phases: list[PhaseSpan] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    safety: list[dict[str, Any]] = field(default_factory=list)
    present: dict[str, Any] = field(default_factory=dict)
    v2g_state: dict[str, str] = field(default_factory=dict)
    slac_state: dict[str, str] = field(default_factory=dict)
    fsm_state: dict[str, str] = field(default_factory=dict)
    session_id: str | None = None
    evccid: str | None = None
    last_error: str | None = None
    sample_interval: float = 0.1
    _last_sample: float = -1.0
    _power_delivery_seen: int = 0

    # ------------------------------------------------------------------ phases
    @property
    def phase(self) -> Phase | None:
        return Phase(self.phases[-1].phase) if self.phases else None

    def enter(self, phase: Phase, t: float) -> bool:
        """Open `phase` unless it is already open or passed; returns True when it opened."""
        current = self.phase
        if current is not None and PHASE_ORDER.index(phase) <= PHASE_ORDER.index(current):
            return False
        if self.phases:
            self.phases[-1].end = t
        self.phases.append(PhaseSpan(phase.value, t))
        return True

    def close(self, t: float) -> None:
        if self.phases and self.phases[-1].end is None:
            self.phases[-1].end = t

    def seen(self) -> list[str]:
        return [p.phase for p in self.phases]

    def missing(self) -> list[str]:
        have = set(self.seen())
        return [p.value for p in PHASE_ORDER if p.value not in have]

    def in_order(self) -> bool:
        indices = [PHASE_ORDER.index(Phase(p)) for p in self.seen()]
        return indices == sorted(indices)

    # ------------------------------------------------------------------ input
    def feed(self, side: str, path: str, value: Any, t: float) -> Phase | None:
        """Take one message; returns the phase it opened, if any."""
        before = self.phase
        match path:
            case "cp/state" if isinstance(value, dict):
                self.present[f"{side}.cp"] = value.get("state")
                if side == "EVSE" and value.get("state") in ("B", "C", "D"):
                    self.enter(Phase.PLUG_IN, t)
                if side == "EVSE" and value.get("state") == "A" and self.phase is not None \
                        and PHASE_ORDER.index(self.phase) >= PHASE_ORDER.index(Phase.SESSION_STOP):
                    self.enter(Phase.UNPLUG, t)
            case "slac/state" if isinstance(value, dict):
                state = str(value.get("state", ""))
                self.slac_state[side] = state
                if state.lower() not in ("idle", "", "waiting", "wait_plug", "unmatched", "stopped") \
                        and self.phase is not None:
                    self.enter(Phase.SLAC, t)
            case "slac/link" if isinstance(value, dict):
                if value.get("link") == "up":
                    self.present[f"{side}.link"] = "up"
                    self.enter(Phase.SLAC, t)
                    if side == "PEV":
                        self.enter(Phase.SDP, t)
                else:
                    self.present[f"{side}.link"] = "down"
            case "v2g/session" if isinstance(value, dict):
                self.v2g_state[side] = str(value.get("state", ""))
                if value.get("protocol"):
                    self.protocol = str(value["protocol"])
                if value.get("session_id"):
                    self.session_id = str(value["session_id"])
                if value.get("evccid"):
                    self.evccid = str(value["evccid"])
                if value.get("last_error"):
                    self.last_error = f"{side}: {value['last_error']}"
                if "sdp" in self.v2g_state[side].lower():
                    self.enter(Phase.SDP, t)
            case "v2g/message" if isinstance(value, dict):
                self._message(side, value, t)
            case "fsm_state":
                self.fsm_state[side] = str(value)
            case "hw/state" if isinstance(value, dict):
                self._hw_state(side, value)
            case "hw/safety" if isinstance(value, dict):
                self.safety.append({"t": t, "side": side, **value})
            case _ if path.endswith("/error") and isinstance(value, dict):
                self.errors.append({"t": t, "side": side, **value})
            case "soc" | "battery_voltage" | "target_voltage" | "target_current" | "inlet_voltage" \
                    | "charger_voltage" | "charger_current" | "charger_max_voltage" \
                    | "charger_max_current" | "evccid" | "battery_capacity":
                self.present[f"{side}.{path}"] = value
                if path == "evccid":
                    self.evccid = str(value)
        self._sample(t)
        return self.phase if self.phase is not before else None

    def _message(self, side: str, value: dict[str, Any], t: float) -> None:
        name = str(value.get("name", ""))
        latency = value.get("latency_ms")
        self.messages.append(Message(t, side, str(value.get("direction", "")), name,
                                     value.get("protocol"),
                                     float(latency) if isinstance(latency, int | float) else None))
        if value.get("protocol") and value.get("protocol") != "apphand":
            self.protocol = str(value["protocol"])
        base = message_base(name)
        # the car's requests drive the phases; the EVSE's received requests are the same events
        if not is_request(name):
            return
        if base == "powerdelivery":
            if self.phase in (Phase.CHARGING, Phase.PRE_CHARGE) and self._charge_started():
                self.enter(Phase.POWER_OFF, t)
            elif self.phase is Phase.PRE_CHARGE:
                self.enter(Phase.CHARGING, t)
            return
        phase = _MESSAGE_PHASE.get(base)
        if phase is not None:
            if phase is Phase.SETUP:
                self.enter(Phase.SDP, t)
            self.enter(phase, t)

    def _charge_started(self) -> bool:
        return any(message_base(m.name) == "currentdemand" for m in self.messages)

    def _hw_state(self, side: str, value: dict[str, Any]) -> None:
        for key in ("present_voltage", "present_current", "inlet_voltage", "contactors", "lock",
                    "isolation"):
            if key in value:
                self.present[f"{side}.hw.{key}"] = value[key]

    def _sample(self, t: float) -> None:
        if t - self._last_sample < self.sample_interval:
            return
        self._last_sample = t
        p = self.present

        def num(key: str) -> float | None:
            v = p.get(key)
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

        self.samples.append(Sample(
            t=round(t, 3),
            evse_voltage=num("EVSE.hw.present_voltage") if num("EVSE.hw.present_voltage") is not None
            else num("EVSE.charger_voltage"),
            evse_current=num("EVSE.hw.present_current") if num("EVSE.hw.present_current") is not None
            else num("EVSE.charger_current"),
            inlet_voltage=num("PEV.inlet_voltage") if num("PEV.inlet_voltage") is not None
            else num("PEV.hw.inlet_voltage"),
            battery_voltage=num("PEV.battery_voltage"),
            soc=num("PEV.soc"),
            target_voltage=num("EVSE.target_voltage"),
            target_current=num("EVSE.target_current"),
        ))

    # ------------------------------------------------------------------ figures
    @property
    def soc(self) -> float | None:
        v = self.present.get("PEV.soc")
        return float(v) if isinstance(v, int | float) else None

    def latencies(self) -> dict[str, dict[str, float]]:
        """Per side and message: count, median, p95 and maximum latency (ms).

        `PEV <name>Res` is the round trip the car waited for; `EVSE <name>Res` is the charger's own
        time from the request to its response.
        """
        by_name: dict[str, list[float]] = {}
        for m in self.messages:
            if m.latency_ms is not None:
                by_name.setdefault(f"{m.side} {m.name}", []).append(m.latency_ms)
        out = {}
        for name, values in sorted(by_name.items()):
            values.sort()
            out[name] = {"count": len(values), "median": values[len(values) // 2],
                         "p95": values[min(len(values) - 1, int(len(values) * 0.95))],
                         "max": values[-1]}
        return out

    def durations(self) -> dict[str, float]:
        return {p.phase: round((p.end if p.end is not None else p.start) - p.start, 3)
                for p in self.phases}

    def to_json(self, **extra: Any) -> dict[str, Any]:
        return {
            "version": LOG_VERSION,
            "protocol": self.protocol,
            "session_id": self.session_id,
            "evccid": self.evccid,
            "phases": [asdict(p) for p in self.phases],
            "phase_durations": self.durations(),
            "missing_phases": self.missing(),
            "samples": [asdict(s) for s in self.samples],
            "messages": [asdict(m) for m in self.messages],
            "latency_ms": self.latencies(),
            "errors": self.errors,
            "safety": self.safety,
            "v2g_state": self.v2g_state,
            "slac_state": self.slac_state,
            "fsm_state": self.fsm_state,
            "final_values": self.present,
            "last_error": self.last_error,
            **extra,
        }


def load_log(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    if not isinstance(data, dict) or "samples" not in data or "phases" not in data:
        raise ValueError(f"{path}: not a ccsbus session log (no samples/phases)")
    return data
