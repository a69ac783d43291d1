"""What every SLAC state machine shares: events in, actions out, logged transitions.

A machine never touches sockets or clocks. It gets events (`Start`, `Stop`, `Received`, `Expired`)
and returns actions (`Send`, `StartTimer`, `CancelTimer`, `LinkUp`, `LinkDown`, `Failed`,
`Observed`); `driver.Driver` carries them out over a `Link` with asyncio timers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

from ccsbus.log import EventLog, get_logger

from .mme import LOCAL_MODEM, Frame, LinkStatusReq, mac_text
from .settings import SlacSettings


class Timer(StrEnum):
    """Timer names: the ISO 15118-3 constants they stand for (values come from SlacTimers)."""

    TT_EVSE_SLAC_init = "TT_EVSE_SLAC_init"
    TT_match_sequence = "TT_match_sequence"
    TT_match_response = "TT_match_response"
    TT_EV_atten_results = "TT_EV_atten_results"
    TT_EVSE_match_MNBC = "TT_EVSE_match_MNBC"
    TP_EV_batch_msg_interval = "TP_EV_batch_msg_interval"
    TT_EVSE_match_session = "TT_EVSE_match_session"
    TT_match_join = "TT_match_join"
    T_link_status_poll = "T_link_status_poll"
    T_modem_response = "T_modem_response"
    T_link_supervision = "T_link_supervision"


# ---------------------------------------------------------------------------- events
@dataclass(frozen=True)
class Start:
    reason: str = "start"


@dataclass(frozen=True)
class Stop:
    reason: str = "stop"


@dataclass(frozen=True)
class Received:
    frame: Frame


@dataclass(frozen=True)
class Expired:
    timer: str


Event = Start | Stop | Received | Expired


# ---------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class Send:
    frame: Frame


@dataclass(frozen=True)
class StartTimer:
    timer: str
    seconds: float


@dataclass(frozen=True)
class CancelTimer:
    timer: str


@dataclass(frozen=True)
class LinkUp:
    peer_mac: bytes
    nid: bytes


@dataclass(frozen=True)
class LinkDown:
    reason: str


@dataclass(frozen=True)
class Failed:
    reason: str


@dataclass(frozen=True)
class Observed:
    frame: Frame


Action = Send | StartTimer | CancelTimer | LinkUp | LinkDown | Failed | Observed


def id_bytes(text: str) -> bytes:
    """A 17-byte SLAC id field from configured text (padded with zeros)."""
    return text.encode("ascii", "replace")[:17].ljust(17, b"\0")


@dataclass
class Context:
    """What a machine needs to know about its surroundings."""

    settings: SlacSettings
    host_mac: bytes
    modem_mac: bytes = LOCAL_MODEM
    random_bytes: Callable[[int], bytes] = os.urandom
    clock: Callable[[], float] = time.monotonic
    log: EventLog = field(default_factory=lambda: get_logger("slac"))


class Machine:
    """Base: the current state, the transition log and the outgoing action list."""

    role = ""

    def __init__(self, ctx: Context, initial: Enum) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.timers = ctx.settings.timers
        self.log = ctx.log
        self.state: Enum = initial
        self.entered = ctx.clock()
        self.last_error: str | None = None
        self.peer_mac: bytes | None = None
        self.nid: bytes | None = None
        self.run_id: bytes | None = None
        self.attenuation: list[int] | None = None
        self._out: list[Action] = []
        self.on_transition: list[Callable[[Machine], None]] = []

    # ---- helpers for subclasses
    def go(self, new: Enum, why: str, **fields: Any) -> None:
        if new is self.state:
            return
        self.log.info("slac transition", role=self.role, frm=self.state.name, to=new.name, why=why, **fields)
        self.state = new
        self.entered = self.ctx.clock()
        for callback in self.on_transition:
            callback(self)

    def send(self, frame: Frame) -> None:
        self._out.append(Send(frame))

    def timer(self, name: str, seconds: float) -> None:
        self._out.append(StartTimer(name, seconds))

    def cancel(self, *names: str) -> None:
        self._out.extend(CancelTimer(n) for n in names)

    def cancel_all(self) -> None:
        self.cancel(*Timer)

    def emit(self, action: Action) -> None:
        self._out.append(action)

    def supervise(self) -> None:
        """While matched, ask the modem now and then whether the network still exists."""
        if self.timers.T_link_supervision > 0:
            self.timer(Timer.T_link_supervision, self.timers.T_link_supervision)

    def poll_supervision(self) -> None:
        self.send(Frame(dst=self.ctx.modem_mac, src=self.ctx.host_mac, body=LinkStatusReq(), mmv=0))
        self.supervise()

    def ignore(self, frame: Frame, why: str) -> None:
        self.log.info("slac frame ignored", role=self.role, state=self.state.name, message=frame.name,
                      src=mac_text(frame.src), why=why)

    # ---- entry point
    def handle(self, event: Event) -> list[Action]:
        self._out = []
        self.dispatch(event)
        out, self._out = self._out, []
        return out

    def dispatch(self, event: Event) -> None:
        raise NotImplementedError

    def snapshot(self) -> dict[str, Any]:
        avg = (sum(self.attenuation) / len(self.attenuation)) if self.attenuation else None
        return {
            "role": self.role,
            "state": self.state.name,
            "peer_mac": mac_text(self.peer_mac) if self.peer_mac else None,
            "nid": self.nid.hex() if self.nid else None,
            "run_id": self.run_id.hex() if self.run_id else None,
            "attenuation": list(self.attenuation) if self.attenuation else None,
            "attenuation_avg": round(avg, 2) if avg is not None else None,
            "last_error": self.last_error,
        }
