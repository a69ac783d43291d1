"""The PEV role of the v2g service: SDP, TCP, the handshake and the EVCC machine, wired to the bus.

Inputs arrive on the bus (battery, inlet, user stop, hw/state, slac/link); the machine decides; this
module carries out its steps: hardware requests on `cpstate` / `relay_request` / `lock_request`,
waits for the hardware where the shutdown order needs it, and the request/response exchange over
TCP with the codec. One asyncio task per session; nothing here blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ccsbus.bus import Bus, PublishRefused
from ccsbus.config import parse_dataclass
from ccsbus.lifecycle import ServiceContext
from ccsbus.log import get_logger

from . import apphand, v2gtp
from .codec import Codec, CodecError, CodecMode, make_codec
from .evcc import (
    Action,
    AwaitContactors,
    AwaitCurrentBelow,
    EvccMachine,
    EvccSettings,
    EvccState,
    EvInputs,
    Finished,
    PublishCharger,
    SetCp,
    SetLock,
    SetRelay,
    Step,
    safe_shutdown,
)
from .sdp_client import SdpTimeout, discover
from .tcp_client import ConnectionLost, V2gClient

log = get_logger("v2g.pev")

T = TypeVar("T")

_POLL = 0.02  # hw/state wait granularity, s
_STOPPING_WAIT = 0.3  # the hardware waits are cut to this when the service is stopping


class Aborted(Exception):
    """The session was cut short from outside (link down, service stopping)."""


@dataclass
class PevState:
    """What the bus told us last; updated by the handlers, read by the session."""

    inputs: EvInputs = field(default_factory=EvInputs)
    hw: dict[str, Any] = field(default_factory=dict)
    link_up: bool = False
    link_interface: str = ""
    link_changed: asyncio.Event = field(default_factory=asyncio.Event)
    abort: asyncio.Event = field(default_factory=asyncio.Event)
    abort_reason: str = ""

    def measured_current(self) -> float | None:
        value = self.hw.get("present_current")
        return float(value) if isinstance(value, int | float) else None


def evcc_settings(ctx: ServiceContext[Any]) -> EvccSettings:
    """`v2g.evcc` as the service's settings carry it (or parsed from the raw section)."""
    own = getattr(ctx.settings, "evcc", None)
    if isinstance(own, EvccSettings):
        return own
    raw = (ctx.stack.sections.get("v2g") or {}).get("evcc") or {}
    return parse_dataclass(EvccSettings, raw, "v2g.evcc")


def evccid_for(interface: str, configured: str) -> str:
    """The configured EVCCID, else the interface's MAC as 12 hex digits."""
    if configured:
        return configured.replace(":", "").upper()
    try:
        mac = Path(f"/sys/class/net/{interface}/address").read_text().strip()
    except OSError:
        mac = ""
    digits = mac.replace(":", "").upper()
    return digits if len(digits) == 12 else "000000000000"


class PevSession:
    """One plug-in: SDP → TCP → handshake → EVCC machine, until SessionStop or safe shutdown."""

    def __init__(self, bus: Bus, codec: Codec, settings: EvccSettings, state: PevState,
                 interface: str, stopping: asyncio.Event) -> None:
        self.bus = bus
        self.codec = codec
        self.settings = settings
        self.state = state
        self.interface = interface
        self.stopping = stopping
        self.protocol: str | None = None
        self.machine: EvccMachine | None = None
        self.fsm_state = ""
        self.result: Finished | None = None
        self.charger: dict[str, float] = {}  # the charger's limits and present values, last heard
        self.started: float | None = None
        self._loop = asyncio.get_running_loop()

    # ------------------------------------------------------------------ publishing
    def _publish(self, path: str, value: Any) -> None:
        try:
            self.bus.publish(path, value)
        except PublishRefused as exc:
            log.error("publish refused", topic=path, reason=str(exc))

    def _publish_state(self, name: str, error: str | None = None) -> None:
        if name != self.fsm_state:
            self.fsm_state = name
            self._publish("fsm_state", name)
        m = self.machine
        ev = self.state.inputs
        if self.started is None and m is not None and m.session_id:
            self.started = time.time()
        self._publish("v2g/session", {
            "role": "PEV", "protocol": self.protocol, "state": name,
            "session_id": m.session_id if m else None,
            "evccid": m.evccid if m else None, "evseid": m.evseid if m else None,
            "soc": ev.soc, "energy_capacity": ev.battery_capacity,
            "battery_voltage": ev.battery_voltage, "inlet_voltage": ev.inlet_voltage,
            "target_voltage": ev.target_voltage, "target_current": ev.target_current,
            "evse_max_voltage": self.charger.get("charger_max_voltage"),
            "evse_max_current": self.charger.get("charger_max_current"),
            "present_voltage": self.charger.get("charger_voltage"),
            "present_current": self.charger.get("charger_current"),
            "started": self.started, "time": time.time(), "last_error": error})

    def _publish_message(self, direction: str, schema: str, tree: dict[str, Any],
                         latency: float | None = None) -> None:
        body = tree.get("V2G_Message", {}).get("Body") if "V2G_Message" in tree else tree
        name = next(iter(body)) if isinstance(body, dict) and body else "?"
        self._publish("v2g/message", {
            "direction": direction, "protocol": schema, "name": name, "tree": tree,
            "time": time.time(),
            "latency_ms": None if latency is None else round(latency * 1000, 2)})

    # ------------------------------------------------------------------ waiting
    async def _race(self, aw: Awaitable[T], timeout: float | None) -> T:
        """Await `aw` unless the session is aborted first; TimeoutError after `timeout`."""
        task = asyncio.ensure_future(aw)
        abort = asyncio.ensure_future(self.state.abort.wait())
        try:
            done, _ = await asyncio.wait({task, abort}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            abort.cancel()
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if abort in done:
            raise Aborted(self.state.abort_reason or "aborted")
        raise TimeoutError

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await self._race(asyncio.sleep(seconds), seconds + 1.0)

    async def _wait_hw(self, check: str, timeout: float) -> bool:
        """Poll hw/state until `check` holds; False (logged) when it did not in time."""
        if self.stopping.is_set():
            timeout = min(timeout, _STOPPING_WAIT)
        deadline = self._loop.time() + timeout
        while True:
            if check == "current":
                current = self.state.measured_current()
                if current is None and self.machine is not None:
                    current = self.machine.charger.get("charger_current")
                if current is None or abs(current) < self.settings.current_off_threshold:
                    return True
            elif check in ("open", "closed"):
                contactors = self.state.hw.get("contactors")
                if contactors is None or contactors == check:
                    return True
            if self._loop.time() >= deadline:
                log.warning("hardware did not follow in time", waiting_for=check,
                            seconds=timeout, hw=self.state.hw)
                return False
            await asyncio.sleep(_POLL)

    # ------------------------------------------------------------------ actions
    async def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case SetCp(state=cp):
                    self._publish("cpstate", cp)
                case SetLock(value=value):
                    self._publish("lock_request", value)
                case SetRelay(value=value):
                    self._publish("relay_request", value)
                case AwaitCurrentBelow(timeout=timeout):
                    await self._wait_hw("current", timeout)
                case AwaitContactors(value=value, timeout=timeout):
                    await self._wait_hw(value, timeout)
                case PublishCharger(values=values):
                    self.charger.update(values)
                    for topic, number in values.items():
                        self._publish(topic, number)
                case Finished() as done:
                    self.result = done
                    state = "Finished" if done.ok else "SafeShutdown"
                    if not done.ok:
                        self.bus.publish_error(f"safe shutdown: {done.reason}")
                    self._publish_state(state, None if done.ok else done.reason)
                    log.info("session ended", ok=done.ok, reason=done.reason,
                             protocol=self.protocol)

    async def fail_safe(self, reason: str) -> Finished:
        """The safe shutdown after an unexpected error anywhere in the session."""
        if self.result is not None:
            return self.result
        return await self._fail_early(reason)

    async def _fail_early(self, reason: str) -> Finished:
        """A failure before the EVCC machine exists: same safe shutdown order."""
        log.warning("safe shutdown", reason=reason, state=self.fsm_state)
        await self._execute(safe_shutdown(self.settings, reason, {"state": self.fsm_state}))
        assert self.result is not None
        return self.result

    # ------------------------------------------------------------------ the session
    async def run(self) -> Finished:
        started = self._loop.time()
        timers = self.settings.timers
        deadline = started + timers.V2G_EVCC_CommunicationSetup_Timeout
        self._publish_state("SDP")
        try:
            found = await self._race(discover(
                self.settings.sdp_target, interface=self.interface, port=self.settings.sdp_port,
                interval=self.settings.sdp_interval,
                max_requests=self.settings.sdp_max_requests,
                on_error=lambda text: self.bus.publish_error(text)), None)
        except (SdpTimeout, OSError, Aborted) as exc:
            return await self._fail_early(f"SDP: {exc}")
        self._publish_state("Connecting")
        try:
            client = await self._race(V2gClient.connect(
                found.host, found.response.port, found.scope_id,
                timeout=timers.V2G_EVCC_Msg_Timeout), None)
        except (OSError, TimeoutError, Aborted) as exc:
            return await self._fail_early(
                f"TCP connect to [{found.host}]:{found.response.port}: {exc!r}")
        try:
            return await self._with_connection(client, deadline)
        finally:
            await client.close()

    async def _with_connection(self, client: V2gClient, deadline: float) -> Finished:
        offered = [p for p in self.settings.protocols if p in apphand.PROTOCOLS]
        self._publish_state("SupportedAppProtocol")
        try:
            request = apphand.build_request(offered)
            client.send(await self.codec.encode("apphand", request))
            self._publish_message("tx", "apphand", request)
            timeout = max(0.0, min(self.settings.timers.V2G_EVCC_Msg_Timeout,
                                   deadline - self._loop.time()))
            sent = self._loop.time()
            data = await self._race(client.receive(timeout), None)
            latency = self._loop.time() - sent
            response = await self.codec.decode("apphand", data)
            self._publish_message("rx", "apphand", response, latency)
            chosen = apphand.parse_response(response, offered)
        except TimeoutError:
            return await self._fail_early("V2G_EVCC_Msg_Timeout: no supportedAppProtocolRes")
        except (ConnectionLost, v2gtp.V2gtpError, CodecError, apphand.HandshakeError,
                Aborted) as exc:
            return await self._fail_early(f"handshake: {exc}")
        if chosen is None:
            return await self._fail_early("handshake: the charger accepts none of "
                                          + ", ".join(offered))
        self.protocol = chosen.schema
        evccid = evccid_for(self.interface, self.settings.evccid)
        started = deadline - self.settings.timers.V2G_EVCC_CommunicationSetup_Timeout
        self.machine = EvccMachine(chosen.schema, self.settings, evccid, started)
        log.info("protocol chosen", protocol=chosen.schema, evccid=evccid)
        step = self.machine.start(self.state.inputs, self._loop.time())
        return await self._drive(client, step)

    async def _drive(self, client: V2gClient, step: Step) -> Finished:
        machine = self.machine
        assert machine is not None and self.protocol is not None
        schema = self.protocol
        while True:
            if step.state is EvccState.SAFE_SHUTDOWN:
                # the session is over: the charger learns it at once from the closed connection
                # and ramps its current down while our hardware sequence runs
                await client.close()
            await self._execute(step.actions)
            if step.request is None:
                assert self.result is not None
                return self.result
            self._publish_state(step.state.value)
            try:
                await self._sleep(step.delay)
                exi = await self.codec.encode(schema, step.request)
                client.send(exi)
                sent = self._loop.time()
                self._publish_message("tx", schema, step.request)
                data = await self._race(client.receive(step.timeout), None)
                latency = self._loop.time() - sent
            except TimeoutError:
                step = machine.on_timeout(self._loop.time())
                continue
            except (ConnectionLost, v2gtp.V2gtpError) as exc:
                step = machine.on_error(str(exc), self._loop.time())
                continue
            except CodecError as exc:
                step = machine.on_error(f"could not encode {step.name}: {exc}",
                                        self._loop.time())
                continue
            except Aborted as exc:
                step = machine.shutdown(str(exc), self._loop.time())
                continue
            try:
                tree = await self.codec.decode(schema, data)
            except CodecError as exc:
                self.bus.publish_error(f"malformed EXI from the charger: {exc}",
                                       payload=data.hex().encode())
                step = machine.on_error(f"malformed EXI: {exc}", self._loop.time())
                continue
            self._publish_message("rx", schema, tree, latency)
            step = machine.on_response(tree, self.state.inputs, self._loop.time())


# ---------------------------------------------------------------------- the role
def _number_handler(state: PevState, attr: str) -> Any:
    def handler(path: str, value: Any) -> None:
        if isinstance(value, int | float):
            setattr(state.inputs, attr, float(value))

    return handler


async def run(ctx: ServiceContext[Any]) -> None:
    """The PEV role until the service stops: one session per link-up (or one, without SLAC)."""
    settings = evcc_settings(ctx)
    bus = ctx.bus
    state = PevState()
    wait_for_link = bool(getattr(ctx.settings, "wait_for_link", True))
    interface = str(getattr(ctx.settings, "interface", "") or "lo")
    mode = getattr(ctx.settings, "codec", CodecMode.MQTT)
    if not isinstance(mode, CodecMode):
        mode = CodecMode(str(mode))
    codec_timeout = float(getattr(ctx.settings, "codec_timeout", 1.0))
    codec = make_codec(mode, bus, codec_timeout)

    for path, attr in (("battery_voltage", "battery_voltage"), ("target_voltage", "target_voltage"),
                       ("target_current", "target_current"), ("soc", "soc"),
                       ("inlet_voltage", "inlet_voltage"),
                       ("battery_capacity", "battery_capacity")):
        bus.subscribe(path, _number_handler(state, attr))

    def on_hw(path: str, value: Any) -> None:
        if isinstance(value, dict):
            state.hw = value
            inlet = value.get("inlet_voltage")
            if isinstance(inlet, int | float):  # the same measurement as `inlet_voltage`
                state.inputs.inlet_voltage = float(inlet)

    def on_cmd(path: str, value: Any) -> None:
        cmd = value.get("cmd") if isinstance(value, dict) else None
        if cmd == "stop":
            log.info("user stop requested")
            state.inputs.stop_requested = True
        else:
            bus.publish_error(f"v2g/cmd {cmd!r} does nothing in the PEV role", topic="v2g/cmd")

    def on_link(path: str, value: Any) -> None:
        if not isinstance(value, dict):
            return
        up = value.get("link") == "up"
        if up:
            state.link_interface = str(value.get("interface") or "")
        elif state.link_up:
            state.abort_reason = "PLC link down"
            state.abort.set()
        state.link_up = up
        state.link_changed.set()

    bus.subscribe("hw/state", on_hw)
    bus.subscribe("v2g/cmd", on_cmd)
    bus.subscribe("slac/link", on_link)
    stop_task = asyncio.create_task(_abort_on_stop(ctx.stopping, state))
    try:
        while not ctx.stopping.is_set():
            if wait_for_link and not await _wait_link(state, ctx.stopping, up=True):
                break
            state.abort.clear()
            state.abort_reason = ""
            state.inputs.stop_requested = False
            session = PevSession(bus, codec, settings, state,
                                 state.link_interface or interface, ctx.stopping)
            try:
                result = await session.run()
            except Exception as exc:  # a bug must not leave the contactors closed
                log.exception("pev session failed", error=repr(exc))
                result = await session.fail_safe(f"internal error: {exc!r}")
            log.info("pev session over", ok=result.ok, reason=result.reason)
            if not wait_for_link:
                await ctx.stopping.wait()
                break
            # the next session needs a new plug-in: the link must go down first
            if not await _wait_link(state, ctx.stopping, up=False):
                break
    finally:
        stop_task.cancel()


async def _abort_on_stop(stopping: asyncio.Event, state: PevState) -> None:
    await stopping.wait()
    state.abort_reason = "service stopping"
    state.abort.set()


async def _wait_link(state: PevState, stopping: asyncio.Event, up: bool) -> bool:
    """Wait until the link is `up` (or down); False when the service stops first."""
    while state.link_up != up:
        state.link_changed.clear()
        waiter = asyncio.ensure_future(state.link_changed.wait())
        stopper = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()
        if stopping.is_set():
            return False
    return True
