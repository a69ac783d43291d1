"""The EVSE role (we are the charger): SDP and TCP servers, codec, MQTT and the SECC machines.

All protocol rules live in secc/; this module moves bytes and values: V2GTP frames to trees
through the codec, trees through the state machine, the machine's commands to hw/cmd and its
values to the user topics, and every message to v2g/message. One asyncio task per connection;
nothing here blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ccsbus.bus import Bus, PublishRefused
from ccsbus.lifecycle import ServiceContext
from ccsbus.log import EventLog, get_logger

from . import apphand, sdp, v2gtp
from .codec import Codec, CodecError, make_codec
from .secc.faults import FaultAction, FaultCase, FaultError, FaultInjector, parse_fault
from .secc.machine import SeccMachine, message_name
from .secc.model import EvseInputs, Isolation, SeccConfig, SeccState, Step, Tree
from .service import V2gSettings
from .tcp import ConnectionClosed, V2gConnection, V2gServer
from .v2gtp import V2gtpError

# an EXI header followed by all-ones: an escape to second-level events no codec accepts here
MALFORMED_EXI = b"\x80\x9a" + b"\xff" * 30
SERVER_RETRY = 5.0  # seconds between attempts to open the SECC's sockets

_INPUT_TOPICS = {
    "charger_max_voltage": "max_voltage",
    "charger_max_current": "max_current",
    "charger_voltage": "present_voltage",
    "charger_current": "present_current",
}


# v2g/session is retained state for dashboards: during CurrentDemand once a second is plenty
SESSION_REFRESH = 1.0


@dataclass
class LinkState:
    up: bool = False
    interface: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class EvseRole:
    def __init__(self, bus: Bus, settings: V2gSettings, log: EventLog | None = None,
                 codec: Codec | None = None) -> None:
        self.bus = bus
        self.settings = settings
        self.log = log or get_logger("v2g")
        self.codec = codec or make_codec(settings.codec, bus, settings.codec_timeout)
        self._session_published = 0.0
        self.cp_state: str | None = None  # the car's CP state as hw measures it; None: not measured
        self.cp_changed = asyncio.Event()
        self.inputs = EvseInputs(
            max_voltage=settings.max_voltage, max_current=settings.max_current,
            max_power=settings.max_power, min_voltage=settings.min_voltage,
            min_current=settings.min_current, peak_current_ripple=settings.peak_current_ripple,
            authorized=settings.auto_authorize)
        self.config = SeccConfig(
            evse_id_din=_din_evse_id(settings.evse_id),
            evse_id_iso2=settings.evse_id or "ZZ00000",
            energy_modes=tuple(settings.energy_modes),
            ongoing_timeout=settings.timers.V2G_SECC_Ongoing_Timeout,
            cable_check_in_standalone=settings.standalone)
        try:
            self.fault_case: FaultCase | None = parse_fault(settings.fault)
        except FaultError as exc:
            self.log.error("bad fault setting, none selected", reason=str(exc))
            bus.publish_error(f"v2g.fault: {exc}")
            self.fault_case = None
        self.injector = FaultInjector(self.fault_case)
        self.link = LinkState()
        self.contactors_changed = asyncio.Event()
        self.user_stop = False
        self.enabled = True
        self.paused_session_id: str | None = None
        self.machine: SeccMachine | None = None
        self.protocol: str | None = None
        self.fsm_state = ""
        self.last_error: str | None = None
        self.server: V2gServer | None = None
        self.sdp_server: sdp.SdpServer | None = None
        self.sessions = 0
        self.connection: V2gConnection | None = None
        self._decode_ms = 0.0
        self._wait_ms = 0.0
        self._stop_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ MQTT inputs
    def subscribe(self) -> None:
        for topic in _INPUT_TOPICS:
            self.bus.subscribe(topic, self._on_number)
        self.bus.subscribe("enabled", self._on_enabled)
        self.bus.subscribe("hw/state", self._on_hw_state)
        self.bus.subscribe("v2g/cmd", self._on_cmd)
        self.bus.subscribe("slac/link", self._on_link)
        self.bus.subscribe("cp/state", self._on_cp_state)

    def _on_cp_state(self, path: str, value: Any) -> None:
        self.cp_state = value.get("state") if isinstance(value, dict) else None
        self.cp_changed.set()

    def _on_number(self, path: str, value: Any) -> None:
        if isinstance(value, int | float):
            setattr(self.inputs, _INPUT_TOPICS[path], float(value))

    def _on_enabled(self, path: str, value: Any) -> None:
        self.enabled = bool(value)
        self.inputs.enabled = self.enabled and not self.user_stop
        if not self.enabled:
            self.log.info("charging disabled by the user")
            self._arm_stop_timer()

    def _arm_stop_timer(self) -> None:
        """The car is told to stop (StopCharging); one that ignores it loses the connection."""
        if self.connection is None or self._stop_timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._stop_timer = loop.call_later(self.settings.timers.stop_timeout, self._force_stop,
                                           self.connection)

    def _force_stop(self, conn: V2gConnection) -> None:
        self._stop_timer = None
        if conn is not self.connection or conn.closed:
            return
        self.error(f"car ignored the stop request for {self.settings.timers.stop_timeout} s; "
                   "closing the connection")
        conn.reset()

    def _on_hw_state(self, path: str, value: Any) -> None:
        if not isinstance(value, dict):
            return
        isolation = value.get("isolation")
        if isinstance(isolation, str):
            with contextlib.suppress(ValueError):
                self.inputs.isolation = Isolation(isolation)
        contactors = value.get("contactors")
        if isinstance(contactors, str) and contactors != self.inputs.contactors:
            self.inputs.contactors = contactors
            self.contactors_changed.set()

    def _on_cmd(self, path: str, value: Any) -> None:
        cmd = value.get("cmd") if isinstance(value, dict) else None
        if cmd == "authorize":
            self.inputs.authorized = True
            self.log.info("car authorised")
        elif cmd == "stop":
            self.user_stop = True
            self.inputs.enabled = False
            self.log.info("user stop requested")
            self._arm_stop_timer()
        elif cmd == "fault":
            try:
                case = parse_fault(value.get("value"))
            except FaultError as exc:
                self.log.warning("bad fault command", reason=str(exc))
                self.bus.publish_error(str(exc), topic="v2g/cmd")
                return
            self.fault_case = case
            self.injector.select(case)
            self.log.info("fault selected", fault=case.name if case else "none")

    def _on_link(self, path: str, value: Any) -> None:
        if not isinstance(value, dict):
            return
        self.link.up = value.get("link") == "up"
        self.link.interface = str(value.get("interface") or "")
        self.link.changed.set()

    # ------------------------------------------------------------------ publishing
    def publish(self, path: str, value: Any) -> None:
        try:
            self.bus.publish(path, value)
        except PublishRefused as exc:
            self.log.warning("publish refused", topic=path, reason=str(exc))

    def _refresh_session(self) -> None:
        now = time.monotonic()
        if now - self._session_published >= SESSION_REFRESH:
            self.publish_session()

    def publish_session(self) -> None:
        self._session_published = time.monotonic()
        session = self.machine.session if self.machine else None
        if session is not None and session.session_id and session.started is None:
            session.started = time.time()
        self.publish("v2g/session", {
            "role": "EVSE",
            "protocol": self.protocol,
            "state": self.fsm_state or "Idle",
            "session_id": session.session_id if session and session.session_id else None,
            "evccid": session.evccid if session else None,
            "evseid": (self.config.evse_id_din if self.protocol == "din"
                       else self.config.evse_id_iso2),
            "soc": session.soc if session else None,
            "full_soc": session.full_soc if session else None,
            "bulk_soc": session.bulk_soc if session else None,
            "energy_capacity": session.battery_capacity if session else None,
            "energy_request": session.energy_request if session else None,
            "ev_max_voltage": session.ev_max_voltage if session else None,
            "ev_max_current": session.ev_max_current if session else None,
            "target_voltage": session.target_voltage if session else None,
            "target_current": session.target_current if session else None,
            "evse_max_voltage": self.inputs.max_voltage,
            "evse_max_current": self.inputs.max_current,
            "present_voltage": self.inputs.present_voltage,
            "present_current": self.inputs.present_current,
            "started": session.started if session else None,
            "time": time.time(),
            "last_error": self.last_error,
        })

    def set_state(self, name: str) -> None:
        if name != self.fsm_state:
            self.log.info("state", state=name, previous=self.fsm_state or "-")
            self.fsm_state = name
            self.publish("fsm_state", name)
            self.publish_session()

    def publish_message(self, direction: str, name: str, tree: Tree, latency_ms: float | None,
                        **timing: float) -> None:
        """One message in or out; a response also says where its latency went (decode_ms, ...)."""
        self.publish("v2g/message", {
            "direction": direction, "protocol": self.protocol or "apphand", "name": name,
            "tree": tree, "time": time.time(), "latency_ms": latency_ms,
            **{k: round(v, 3) for k, v in timing.items()}})

    def error(self, reason: str) -> None:
        self.last_error = reason
        self.log.warning("session error", reason=reason)
        self.bus.publish_error(reason)

    # ------------------------------------------------------------------ servers
    async def run(self, stopping: asyncio.Event, wait_for_link: bool) -> None:
        self.subscribe()
        self.set_state("Idle")
        while not stopping.is_set():
            if wait_for_link:
                if not await self._wait_link(stopping, up=True):
                    return
                interface = self.settings.interface or self.link.interface or "lo"
            else:
                interface = self.settings.interface or "lo"
            try:
                await self.start_servers(interface)
            except OSError as exc:
                # a missing interface or address must not end the service: report and retry
                await self.stop_servers()
                self.error(f"cannot start the SECC on {interface!r}: {exc}; retrying in "
                           f"{SERVER_RETRY} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), SERVER_RETRY)
                continue
            try:
                if wait_for_link:
                    await self._wait_link(stopping, up=False)
                    if not stopping.is_set():
                        self.log.info("PLC link down, closing the V2G servers")
                else:
                    await stopping.wait()
            finally:
                await self.stop_servers()

    async def _wait_link(self, stopping: asyncio.Event, up: bool) -> bool:
        while self.link.up != up:
            self.link.changed.clear()
            waiters = {asyncio.ensure_future(self.link.changed.wait()),
                       asyncio.ensure_future(stopping.wait())}
            _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            if stopping.is_set():
                return False
        return True

    async def start_servers(self, interface: str) -> None:
        address = self.settings.address or str(sdp.link_local_address(interface))
        self.server = V2gServer(address, interface, self.settings.tcp_port,
                                self.handle_connection, self.settings.max_payload)
        port = await self.server.start()
        self.sdp_server = sdp.SdpServer(
            interface, port, udp_port=self.settings.sdp_port,
            address=sdp.ipaddress.IPv6Address(address.split("%")[0]),
            on_error=self._sdp_error,
            on_request=lambda addr: self.log.info("SDP request answered", peer=str(addr[0])))
        await self.sdp_server.start()
        self.log.info("SECC listening", interface=interface, address=address, tcp_port=port,
                      sdp_port=self.sdp_server.bound_port)

    def _sdp_error(self, text: str) -> None:
        self.log.warning("SDP", reason=text)
        self.bus.publish_error(text)

    async def stop_servers(self) -> None:
        if self.sdp_server is not None:
            self.sdp_server.close()
            self.sdp_server = None
        if self.server is not None:
            await self.server.close()
            self.server = None

    # ------------------------------------------------------------------ one car connection
    async def handle_connection(self, conn: V2gConnection) -> None:
        self.sessions += 1
        self.log.info("car connected", peer=conn.peer)
        self.machine = None
        self.protocol = None
        self.last_error = None
        self.user_stop = False
        self.inputs.enabled = self.enabled
        self.injector.select(self.fault_case)
        self.connection = conn
        if not self.enabled:
            self._arm_stop_timer()
        self.set_state("SupportedAppProtocol")
        reason = "connection closed"
        try:
            reason = await self._serve(conn)
        except asyncio.CancelledError:
            reason = "connection replaced or servers stopping"
            raise
        except Exception as exc:  # a bug must not leave the contactors closed
            reason = f"internal error: {exc!r}"
            self.log.exception("session failed")
        finally:
            if self.connection is conn:
                self.connection = None
                if self._stop_timer is not None:
                    self._stop_timer.cancel()
                    self._stop_timer = None
                self._session_over(reason)
            else:
                # a new connection took over: its session owns the state now
                self.log.info("car session replaced by a new connection", reason=reason)
                if self.inputs.contactors != "open":
                    self.publish("hw/cmd", {"cmd": "safe_shutdown"})

    async def _serve(self, conn: V2gConnection) -> str:
        loop = asyncio.get_running_loop()
        timers = self.settings.timers
        setup_deadline = loop.time() + timers.V2G_SECC_CommunicationSetup_Timeout
        schema = "apphand"
        while True:
            timeout = timers.V2G_SECC_Sequence_Timeout
            waiting_setup = self.machine is None or self.machine.state is SeccState.WAIT_SESSION_SETUP
            if waiting_setup:
                timeout = min(timeout, max(0.0, setup_deadline - loop.time()))
            try:
                payload_type, payload = await asyncio.wait_for(conn.receive(), timeout)
            except TimeoutError:
                name = ("V2G_SECC_CommunicationSetup_Timeout" if waiting_setup
                        else "V2G_SECC_Sequence_Timeout")
                self.error(f"{name} expired in state {self.fsm_state}")
                return name
            except V2gtpError as exc:
                self.error(f"bad V2GTP header from {conn.peer}: {exc}; closing the connection")
                return "bad V2GTP header"
            except ConnectionClosed as exc:
                return f"car closed the connection ({exc})"
            t_rx = conn.last_rx
            if payload_type != v2gtp.PAYLOAD_EXI:
                self.error(f"payload type 0x{payload_type:04x} on the V2G connection")
                return "unexpected payload type"
            t_decode = loop.time()
            try:
                tree = await self.codec.decode(schema, payload)
            except CodecError as exc:
                self.error(f"undecodable {schema} message ({exc}): {payload[:32].hex()}")
                return "undecodable message"
            if self.connection is not conn:
                return "replaced by a new connection"
            if self.machine is None:
                chosen = await self._handshake(conn, tree, t_rx)
                if chosen is None:
                    return "no common protocol"
                schema = chosen
                continue
            self._decode_ms = (loop.time() - t_decode) * 1000
            self._wait_ms = (t_decode - t_rx) * 1000
            keep_going = await self._request(conn, schema, tree, t_rx)
            if not keep_going:
                return self.last_error or "session stopped"

    async def _handshake(self, conn: V2gConnection, tree: Tree, t_rx: float) -> str | None:
        self.publish_message("rx", message_name(tree), tree, None)
        try:
            result = apphand.negotiate(tree, self.settings.protocols)
        except apphand.HandshakeError as exc:
            self.error(f"handshake: {exc}")
            return None
        try:
            data = await self.codec.encode("apphand", result.response)
        except CodecError as exc:
            self.error(f"cannot encode supportedAppProtocolRes: {exc}")
            return None
        conn.send(data)
        latency = (asyncio.get_running_loop().time() - t_rx) * 1000
        self.publish_message("tx", "supportedAppProtocolRes", result.response, latency)
        if result.protocol is None:
            self.error("no protocol in common with the car")
            return None
        self.protocol = result.protocol.schema
        self.machine = SeccMachine(self.protocol, self.config,
                                   paused_session_id=self.paused_session_id)
        self.log.info("protocol negotiated", protocol=self.protocol, code=result.code.value)
        self.set_state(self.machine.state.value)
        return self.protocol

    async def _request(self, conn: V2gConnection, schema: str, tree: Tree, t_rx: float) -> bool:
        """Answer one request; False when the session is over."""
        assert self.machine is not None
        loop = asyncio.get_running_loop()
        try:
            step = self.machine.handle(tree, self.inputs, time.time())
        except ValueError as exc:
            self.error(f"unreadable request: {exc}")
            return False
        if step.wait_contactors == "closed" and not self.settings.standalone:
            await self._await_cp_ready(step)
            if step.close:  # no car in C/D: the contactors are not to be closed at all
                step.hw = [c for c in step.hw if not (c.cmd == "contactor" and c.value == "close")]
        for command in step.hw:
            if command.cmd == "cable_check" and not self.settings.standalone:
                # a verdict heard before the request is stale: wait for hw to report this check
                self.inputs.isolation = Isolation.UNKNOWN
            self.publish("hw/cmd", {"cmd": command.cmd} if command.value is None
                         else {"cmd": command.cmd, "value": command.value})
        if step.wait_contactors and not self.settings.standalone and not step.close:
            await self._await_contactors(step)
        action = self.injector.apply(step)
        if action is not FaultAction.NONE:
            self.log.info("fault injected", fault=self.fault_case.name if self.fault_case else "",
                          action=action.value, response=step.response_name)
        t_encode = loop.time()
        sent = await self._send(conn, schema, step, action)
        t_sent = loop.time()
        latency = (t_sent - t_rx) * 1000
        # everything below happens after the response left: it must not delay the car
        self.publish_message("rx", step.request, tree, None)
        if sent is not None:
            self.publish_message("tx", step.response_name, sent, latency, queued_ms=self._wait_ms,
                                 decode_ms=self._decode_ms, handle_ms=(t_encode - t_rx) * 1000
                                 - self._decode_ms - self._wait_ms,
                                 encode_ms=(t_sent - t_encode) * 1000)
        if step.error:
            self.error(step.error)
        for path, value in step.publish.items():
            self.publish(path, value)
        if self.settings.standalone:
            self._follow_targets(step)
        if step.state.value == self.fsm_state:
            self._refresh_session()  # same state (CurrentDemand loop): values still move
        self.set_state(step.state.value)
        if step.state is SeccState.SESSION_STOPPED and self.machine.session.paused_session_id:
            self.paused_session_id = self.machine.session.paused_session_id
        if action in (FaultAction.TCP_RESET, FaultAction.BAD_V2GTP_HEADER):
            return False
        injected_failure = (action is FaultAction.MODIFY and sent is not None
                            and str(_body(sent, step.response_name).get("ResponseCode", ""))
                            .startswith("FAILED"))
        return not (step.close or injected_failure)

    async def _send(self, conn: V2gConnection, schema: str, step: Step,
                    action: FaultAction) -> Tree | None:
        if step.response is None or action is FaultAction.NO_RESPONSE:
            return None
        if action is FaultAction.TCP_RESET:
            conn.reset()
            return None
        if action is FaultAction.MALFORMED_EXI:
            conn.send(MALFORMED_EXI)
            return None
        try:
            data = await self.codec.encode(schema, step.response)
        except CodecError as exc:
            self.error(f"cannot encode {step.response_name}: {exc}")
            step.close = True
            return None
        if action is FaultAction.BAD_V2GTP_HEADER:
            frame = bytearray(v2gtp.encode(data))
            frame[0], frame[1] = 0x02, 0xFD
            conn.send_raw(bytes(frame))
            await conn.drain()
        else:
            conn.send(data)
        if step.close:
            await conn.drain()
        return step.response

    async def _await_cp_ready(self, step: Step) -> None:
        """CPState_Detection_Timeout: energy only for a car that says so with CP state C or D.

        A stack without CP measurement (no cp/state heard) is not held up: hw's safety machine
        is the one that guards the contactors there.
        """
        timeout = self.settings.timers.CPState_Detection_Timeout
        if await self._wait_until(lambda: self.cp_state is None or self.cp_state in ("C", "D"),
                                  self.cp_changed, timeout):
            return
        self._fail_step(step, "FAILED", f"CPState_Detection_Timeout: CP state {self.cp_state}, "
                        f"not C/D, {timeout} s after PowerDeliveryReq")

    async def _await_contactors(self, step: Step) -> None:
        want = step.wait_contactors
        timeout = self.settings.timers.contactor_timeout
        if await self._wait_until(lambda: self.inputs.contactors == want, self.contactors_changed,
                                  timeout):
            return
        self._fail_step(step, "FAILED_ContactorError" if self.protocol == "iso2" else "FAILED",
                        f"contactors not {want} within {timeout} s")

    @staticmethod
    async def _wait_until(ready: Callable[[], bool], changed: asyncio.Event, timeout: float) -> bool:
        """Whether `ready()` holds within `timeout`, checked each time a handler sets `changed`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not ready():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return True

    def _fail_step(self, step: Step, code: str, reason: str) -> None:
        """Answer `code` instead and end the session (a condition outside the message failed)."""
        if step.response is not None:
            _body(step.response, step.response_name)["ResponseCode"] = code
        step.close, step.error, step.state = True, reason, SeccState.SESSION_STOPPED
        assert self.machine is not None
        self.machine.state = SeccState.SESSION_STOPPED

    def _follow_targets(self, step: Step) -> None:
        """Standalone: behave like an ideal supply that follows the car at once."""
        assert self.machine is not None
        session = self.machine.session
        if step.state in (SeccState.PRECHARGE, SeccState.CHARGING) and session.target_voltage:
            self.inputs.present_voltage = session.target_voltage
        self.inputs.present_current = (
            session.target_current or 0.0 if step.state is SeccState.CHARGING else 0.0)
        self.inputs.contactors = "closed" if step.state is SeccState.CHARGING else "open"

    def _session_over(self, reason: str) -> None:
        state = self.machine.state if self.machine else None
        clean = state is SeccState.SESSION_STOPPED and self.last_error is None
        self.log.info("car session over", reason=reason, clean=clean, sessions=self.sessions)
        if not clean and self.last_error is None:
            self.error(f"session ended: {reason}")
        if not clean or self.inputs.contactors != "open":
            # whatever happened: current to zero, contactors open, in hw's safe order
            self.publish("hw/cmd", {"cmd": "safe_shutdown"})
            self.publish("target_current", 0.0)
        self.inputs.authorized = self.settings.auto_authorize
        self.inputs.isolation = Isolation.UNKNOWN if not self.settings.standalone else Isolation.VALID
        self.set_state("SessionStopped" if clean else "SessionAborted")
        self.publish_session()


def _body(tree: Tree, name: str) -> dict[str, Any]:
    body: dict[str, Any] = tree["V2G_Message"]["Body"][name]
    return body


def _din_evse_id(evse_id: str) -> str:
    """DIN's EVSEID is hexBinary: hex text passes, anything else becomes its bytes in hex."""
    if not evse_id:
        return "00"
    try:
        bytes.fromhex(evse_id)
        return evse_id.upper()
    except ValueError:
        return evse_id.encode("utf-8")[:32].hex().upper()


async def run(ctx: ServiceContext[V2gSettings]) -> None:
    role = EvseRole(ctx.bus, ctx.settings, ctx.log)
    await role.run(ctx.stopping, ctx.settings.wait_for_link)
