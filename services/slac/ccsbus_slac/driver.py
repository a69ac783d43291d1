"""Runs one SLAC state machine over a Link: frames in, actions out, asyncio timers, modem discovery."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from ccsbus.log import EventLog, get_logger

from .evse_fsm import EvseMachine
from .fsm import (
    Action,
    CancelTimer,
    Context,
    Event,
    Expired,
    Failed,
    LinkDown,
    LinkUp,
    Machine,
    Observed,
    Received,
    Send,
    Start,
    StartTimer,
    Stop,
)
from .link import Link
from .listen_fsm import ListenMachine
from .mme import (
    LOCAL_MODEM,
    Frame,
    GetKeyCnf,
    GetKeyReq,
    ParseError,
    SwVerCnf,
    SwVerReq,
    mac_text,
    parse_frame,
    vendor_frame,
)
from .pev_fsm import PevMachine
from .settings import SlacSettings

DISCOVERY_RESEND = 0.5  # seconds between VS_SW_VER.REQ while waiting for a modem


class ModemNotFound(RuntimeError):
    """No modem answered the discovery within the configured time."""


@dataclass
class ModemInfo:
    mac: bytes
    version: str
    device_id: int
    nid: bytes | None = None

    def as_dict(self) -> dict[str, object]:
        return {"mac": mac_text(self.mac), "firmware": self.version, "device_id": self.device_id,
                "nid": self.nid.hex() if self.nid else None}


def make_machine(role: str, ctx: Context) -> Machine:
    match role:
        case "EVSE":
            return EvseMachine(ctx)
        case "PEV":
            return PevMachine(ctx)
        case "LISTEN":
            return ListenMachine(ctx)
    raise ValueError(f"unknown SLAC role {role!r}")


class Driver:
    """Owns the link, the machine and its timers. Callbacks report what the machine decided."""

    def __init__(self, role: str, link: Link, settings: SlacSettings, log: EventLog | None = None) -> None:
        self.role = role
        self.link = link
        self.settings = settings
        self.log = log or get_logger("slac")
        self.ctx = Context(settings=settings, host_mac=link.mac, log=self.log)
        self.machine = make_machine(role, self.ctx)
        self.modem: ModemInfo | None = None
        self.on_state: list[Callable[[Machine], None]] = []
        self.on_link_up: list[Callable[[LinkUp], None]] = []
        self.on_link_down: list[Callable[[LinkDown], None]] = []
        self.on_failed: list[Callable[[Failed], None]] = []
        self.on_observed: list[Callable[[Frame], None]] = []
        self.on_ignored: list[Callable[[str], None]] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._waiters: list[tuple[Callable[[Frame], bool], asyncio.Future[Frame]]] = []
        self._rx_task: asyncio.Task[None] | None = None
        self.machine.on_transition.append(self._transition)

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        await self.link.open()
        self._rx_task = asyncio.create_task(self._rx_loop(), name=f"slac-rx-{self.role}")

    async def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._rx_task is not None:
            self._rx_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rx_task
        self.link.close()

    def start(self, reason: str = "start") -> None:
        self.feed(Start(reason))

    def stop(self, reason: str = "stop") -> None:
        self.feed(Stop(reason))

    # ------------------------------------------------------------------ modem management
    async def request(self, frame: Frame, match: Callable[[Frame], bool], timeout: float,
                      resend: float | None = None) -> Frame | None:
        """Send a management request and wait for the first frame `match` accepts."""
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        entry = (match, fut)
        self._waiters.append(entry)
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.link.send(frame.pack())
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), min(left, resend or left))
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        return None
        finally:
            self._waiters.remove(entry)
            fut.cancel()

    async def discover(self) -> ModemInfo:
        """Find our modem (VS_SW_VER) and read its network (CM_GET_KEY)."""
        me = self.link.mac
        timeout = self.settings.modem_discovery_timeout
        reply = await self.request(
            vendor_frame(LOCAL_MODEM, me, SwVerReq()),
            lambda f: isinstance(f.body, SwVerCnf) and f.dst == me, timeout, resend=DISCOVERY_RESEND)
        if reply is None:
            raise ModemNotFound(
                f"no HomePlug modem answered VS_SW_VER.REQ on {self.link.description} within {timeout:g} s; "
                "check the interface name (slac.interface), the Ethernet cable to the modem, the modem's "
                "power supply, and that its PIB is configured for this role (EVSE/PEV)")
        assert isinstance(reply.body, SwVerCnf)
        info = ModemInfo(mac=reply.src, version=reply.body.version, device_id=reply.body.device_id)
        self.ctx.modem_mac = reply.src
        key = await self.request(
            Frame(dst=reply.src, src=me, body=GetKeyReq()),
            lambda f: isinstance(f.body, GetKeyCnf) and f.dst == me and f.src == reply.src,
            self.settings.timers.T_modem_response)
        if key is not None and isinstance(key.body, GetKeyCnf):
            info.nid = key.body.nid
        self.modem = info
        self.log.info("modem found", link=self.link.description, **info.as_dict())
        return info

    # ------------------------------------------------------------------ machine plumbing
    def feed(self, event: Event) -> None:
        actions = self.machine.handle(event)
        for action in actions:
            self._apply(action)

    def _apply(self, action: Action) -> None:
        match action:
            case Send(frame):
                try:
                    self.link.send(frame.pack())
                except OSError as exc:
                    self.log.error("slac send failed", message=frame.name, error=str(exc))
            case StartTimer(name, seconds):
                old = self._timers.pop(name, None)
                if old is not None:
                    old.cancel()
                loop = asyncio.get_running_loop()
                self._timers[name] = loop.call_later(seconds, self._expire, name)
            case CancelTimer(name):
                handle = self._timers.pop(name, None)
                if handle is not None:
                    handle.cancel()
            case LinkUp():
                for up_cb in self.on_link_up:
                    up_cb(action)
            case LinkDown():
                for down_cb in self.on_link_down:
                    down_cb(action)
            case Failed():
                for fail_cb in self.on_failed:
                    fail_cb(action)
            case Observed(frame):
                for obs_cb in self.on_observed:
                    obs_cb(frame)

    def _expire(self, name: str) -> None:
        self._timers.pop(name, None)
        self.feed(Expired(name))

    def _transition(self, machine: Machine) -> None:
        for cb in self.on_state:
            cb(machine)

    def _ignored(self, reason: str) -> None:
        for cb in self.on_ignored:
            cb(reason)

    async def _rx_loop(self) -> None:
        while True:
            data = await self.link.recv()
            try:
                frame = parse_frame(data)
            except ParseError as exc:
                self.log.info("slac frame ignored", role=self.role, why=str(exc), length=len(data))
                self._ignored(str(exc))
                continue
            for match, fut in self._waiters:
                if not fut.done() and match(frame):
                    fut.set_result(frame)
                    break
            else:
                if not frame.known and self.role != "LISTEN":
                    self.log.info("slac frame ignored", role=self.role, why=f"unknown MMTYPE {frame.name}",
                                  src=mac_text(frame.src))
                    self._ignored(f"unknown MMTYPE {frame.name}")
                    continue
                try:
                    self.feed(Received(frame))
                except Exception as exc:  # a bug must not kill the receive loop; it is logged loudly
                    self.log.exception("slac machine error", message=frame.name, error=str(exc))
