"""The SLAC service: modem driver + SLAC state machine on the bus.

In: `cp/state` (plug-in with 5 % duty starts matching, state A ends it), `slac/cmd` (start/stop/reset).
Out: retained `slac/state`, retained `slac/link` (up/down, the event v2g waits for), `slac/observed`
(listen role), `slac/error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from ccsbus.lifecycle import ServiceContext, ServiceSpec

from .driver import Driver, ModemNotFound
from .fsm import Failed, LinkDown, LinkUp, Machine
from .link import Link, LinkError, PcapLink, UdpLink
from .mme import Frame, fields_of, mac_text, parse_mac
from .settings import SlacSettings

ERROR_RATE = 1.0  # seconds between error events of the same kind (a flood of bad frames stays one line a second)
TRIGGER_STATES = ("B", "C", "D")


def make_link(settings: SlacSettings) -> Link:
    if settings.link == "udp":
        mac = parse_mac(settings.host_mac) if settings.host_mac else None
        return UdpLink(settings.udp_host, settings.udp_port, mac=mac)
    return PcapLink(settings.interface)


class SlacService:
    def __init__(self, ctx: ServiceContext[SlacSettings]) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.bus = ctx.bus
        self.log = ctx.log
        self.role = ctx.role
        self.driver: Driver | None = None
        self.state_name = "STARTING"
        self.last_error: str | None = None
        self.started: float | None = None
        self.cp_trigger = False
        self.pending_start: str | None = "listen" if self.role == "LISTEN" else None
        self.ready = asyncio.Event()
        self.rediscover = asyncio.Event()
        self._error_times: dict[str, float] = {}

    # ------------------------------------------------------------------ publishing
    def publish_state(self, machine: Machine | None = None) -> None:
        if machine is not None:
            snap = machine.snapshot()
            self.state_name = snap["state"]
            if snap.get("last_error"):
                self.last_error = snap["last_error"]
        else:
            snap = {"role": self.role, "state": self.state_name}
        snap["role"] = self.role
        snap["last_error"] = self.last_error
        snap["modem"] = self.driver.modem.as_dict() if self.driver and self.driver.modem else None
        snap["started"] = self.started
        snap["time"] = time.time()
        self.bus.publish("slac/state", snap)

    def error(self, reason: str, kind: str | None = None) -> None:
        key = kind or reason
        now = time.monotonic()
        if now - self._error_times.get(key, -1e9) < ERROR_RATE:
            return
        self._error_times[key] = now
        self.bus.publish_error(reason)

    def _link_up(self, event: LinkUp) -> None:
        self.bus.publish("slac/link", {"link": "up", "interface": self._interface(),
                                       "peer_mac": mac_text(event.peer_mac), "nid": event.nid.hex(),
                                       "time": time.time()})

    def _link_down(self, event: LinkDown) -> None:
        self.bus.publish("slac/link", {"link": "down", "interface": self._interface(), "time": time.time()})

    def _failed(self, event: Failed) -> None:
        self.last_error = event.reason
        self.log.warning("slac failed", reason=event.reason)
        self.error(event.reason, "failed")

    def _observed(self, frame: Frame) -> None:
        self.bus.publish("slac/observed", {"message": frame.name, "src": mac_text(frame.src),
                                           "dst": mac_text(frame.dst), "fields": fields_of(frame.body),
                                           "time": time.time()})

    def _interface(self) -> str:
        return self.settings.interface if self.settings.link == "pcap" else f"udp:{self.settings.udp_port}"

    # ------------------------------------------------------------------ inputs
    def on_cp(self, path: str, value: Any) -> None:
        if not isinstance(value, dict):
            return
        state, duty = value.get("state"), value.get("duty")
        trigger = (state in TRIGGER_STATES and isinstance(duty, int | float)
                   and self.settings.cp_duty_min <= duty <= self.settings.cp_duty_max)
        if state in ("A", "E", "F"):
            self.cp_trigger = False
            self.pending_start = None
            if self.driver is not None and self.role != "LISTEN":
                self.driver.stop(f"CP state {state}")
            return
        if trigger and not self.cp_trigger and self.settings.auto_start and self.role != "LISTEN":
            self.request_start(f"CP state {state}, duty {duty:g} %")
        if trigger:
            self.cp_trigger = True
        elif isinstance(duty, int | float):
            # 5 % withdrawn: the next 5 % is a new request for digital communication
            self.cp_trigger = False

    def on_cmd(self, path: str, value: Any) -> None:
        cmd = value.get("cmd") if isinstance(value, dict) else None
        match cmd:
            case "start":
                self.request_start("slac/cmd start")
            case "stop":
                self.pending_start = None
                if self.driver is not None:
                    self.driver.stop("slac/cmd stop")
            case "reset":
                if self.driver is not None:
                    self.driver.stop("slac/cmd reset")
                self.pending_start = "listen" if self.role == "LISTEN" else None
                self.rediscover.set()

    def request_start(self, reason: str) -> None:
        if self.driver is not None and self.ready.is_set():
            self.started = time.time()
            self.driver.start(reason)
        else:
            self.pending_start = reason  # starts as soon as the modem is found

    # ------------------------------------------------------------------ main loop
    async def run(self) -> None:
        self.bus.subscribe("slac/cmd", self.on_cmd)
        if self.role != "LISTEN":
            self.bus.subscribe("cp/state", self.on_cp)
        self.publish_state()
        self._link_down(LinkDown("service start"))
        stopping = self.ctx.stopping
        while not stopping.is_set():
            if await self._bring_up():
                waiter = asyncio.create_task(self.rediscover.wait())
                stopper = asyncio.create_task(stopping.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                self.rediscover.clear()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self.settings.modem_retry_interval)
            await self._tear_down()

    async def _bring_up(self) -> bool:
        try:
            driver = Driver(self.role, make_link(self.settings), self.settings, self.log)
            await driver.open()
        except LinkError as exc:
            self._problem("NO_LINK", str(exc))
            return False
        self.driver = driver
        self.state_name = "DISCOVERY"
        self.publish_state()
        try:
            await driver.discover()
        except ModemNotFound as exc:
            self._problem("NO_MODEM", str(exc))
            return False
        driver.on_state.append(self.publish_state)
        driver.on_link_up.append(self._link_up)
        driver.on_link_down.append(self._link_down)
        driver.on_failed.append(self._failed)
        driver.on_observed.append(self._observed)
        driver.on_ignored.append(lambda reason: self.error(f"ignored frame: {reason}", "ignored"))
        self.last_error = None
        self.ready.set()
        self.publish_state(driver.machine)
        if self.pending_start is not None:
            reason, self.pending_start = self.pending_start, None
            self.request_start(reason)
        return True

    def _problem(self, state: str, reason: str) -> None:
        self.state_name = state
        self.last_error = reason
        self.log.error("slac modem problem", state=state, reason=reason)
        self.error(reason, state)
        self.publish_state()

    async def _tear_down(self) -> None:
        self.ready.clear()
        if self.driver is not None:
            if self.driver.machine.state.name in ("JOINING", "MATCHED", "JOINED"):
                self.driver.stop("service stopping")
            await self.driver.close()
            self.driver = None


async def run(ctx: ServiceContext[SlacSettings]) -> None:
    await SlacService(ctx).run()


SPEC = ServiceSpec(
    name="slac",
    settings=SlacSettings,
    run=run,
    description="SLAC matching (ISO 15118-3) and HomePlug Green PHY modem driver",
)
