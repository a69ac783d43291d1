"""Helpers of the EVCC tests: a scripted DC charger (pure), the same behind real SDP/TCP sockets,
a topic recorder and the safe-shutdown order check. Loaded by path from the test modules.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ccsbus.config import BrokerConfig, LogConfig, Role, StackConfig, setting
from ccsbus.lifecycle import ServiceSpec, serve
from ccsbus_v2g import apphand, pev_role, sdp, v2gtp
from ccsbus_v2g.codec import CodecMode
from ccsbus_v2g.evcc import EvccSettings, EvccTimers
from ccsbus_v2g.physical import from_float

SESSION = "0A1B2C3D4E5F6071"
PROTOCOLS = ["din", "iso2"]


def pv(x: float, unit: str, schema: str) -> dict[str, Any]:
    return from_float(x, unit, schema)


def dc_status(schema: str, code: str = "EVSE_Ready", notification: str = "None") -> dict[str, Any]:
    return {"EVSEIsolationStatus": "Valid", "EVSEStatusCode": code,
            "NotificationMaxDelay": 0, "EVSENotification": notification}


class Charger:
    """Answers like a DC charger; `present_voltage` follows the car's PreCharge target."""

    def __init__(self, schema: str, cable_check_ongoing: int = 1, precharge_steps: int = 3) -> None:
        self.schema = schema
        self.cable_check_ongoing = cable_check_ongoing
        self.precharge_steps = precharge_steps
        self.present_voltage = 0.0
        self.received: list[str] = []
        self.session = SESSION

    def _pmax_schedule(self) -> dict[str, Any]:
        interval = {"start": 0, "duration": 86400}
        if self.schema == "din":  # DIN: an id and PMax as a plain short (W)
            return {"PMaxScheduleID": 1,
                    "PMaxScheduleEntry": [{"RelativeTimeInterval": interval, "PMax": 32767}]}
        return {"PMaxScheduleEntry": [{"RelativeTimeInterval": interval,
                                       "PMax": pv(50000, "W", "iso2")}]}

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        body = request["V2G_Message"]["Body"]
        name = next(iter(body))
        self.received.append(name)
        req = body[name]
        s = self.schema
        res: dict[str, Any]
        match name:
            case "SessionSetupReq":
                res = {"ResponseCode": "OK_NewSessionEstablished", "EVSEID": "ZZ00000"}
                if s == "din":
                    res = {"ResponseCode": "OK_NewSessionEstablished", "EVSEID": "5A5A",
                           "DateTimeNow": 0}
            case "ServiceDiscoveryReq":
                if s == "din":
                    res = {"ResponseCode": "OK",
                           "PaymentOptions": {"PaymentOption": ["ExternalPayment"]},
                           "ChargeService": {"ServiceTag": {"ServiceID": 1,
                                                            "ServiceCategory": "EVCharging"},
                                             "FreeService": False,
                                             "EnergyTransferType": "DC_extended"}}
                else:
                    res = {"ResponseCode": "OK",
                           "PaymentOptionList": {"PaymentOption": ["ExternalPayment"]},
                           "ChargeService": {"ServiceID": 1, "ServiceCategory": "EVCharging",
                                             "FreeService": False,
                                             "SupportedEnergyTransferMode": {
                                                 "EnergyTransferMode": ["DC_extended"]}}}
            case "ServicePaymentSelectionReq" | "PaymentServiceSelectionReq":
                res = {"ResponseCode": "OK"}
            case "ContractAuthenticationReq" | "AuthorizationReq":
                res = {"ResponseCode": "OK", "EVSEProcessing": "Finished"}
            case "ChargeParameterDiscoveryReq":
                res = {"ResponseCode": "OK", "EVSEProcessing": "Finished",
                       "SAScheduleList": {"SAScheduleTuple": [{
                           "SAScheduleTupleID": 7,
                           "PMaxSchedule": self._pmax_schedule()}]},
                       "DC_EVSEChargeParameter": {
                           "DC_EVSEStatus": dc_status(s),
                           "EVSEMaximumCurrentLimit": pv(200, "A", s),
                           "EVSEMaximumPowerLimit": pv(100000, "W", s),
                           "EVSEMaximumVoltageLimit": pv(500, "V", s),
                           "EVSEMinimumCurrentLimit": pv(0, "A", s),
                           "EVSEMinimumVoltageLimit": pv(150, "V", s),
                           "EVSEPeakCurrentRipple": pv(1, "A", s)}}
            case "CableCheckReq":
                ongoing = self.received.count("CableCheckReq") <= self.cable_check_ongoing
                res = {"ResponseCode": "OK", "DC_EVSEStatus": dc_status(s),
                       "EVSEProcessing": "Ongoing" if ongoing else "Finished"}
            case "PreChargeReq":
                target = req["EVTargetVoltage"]
                goal = target["Value"] * 10.0 ** target["Multiplier"]
                self.present_voltage += (goal - self.present_voltage) / max(
                    1, self.precharge_steps - self.received.count("PreChargeReq") + 1)
                res = {"ResponseCode": "OK", "DC_EVSEStatus": dc_status(s),
                       "EVSEPresentVoltage": pv(self.present_voltage, "V", s)}
            case "PowerDeliveryReq":
                res = {"ResponseCode": "OK", "DC_EVSEStatus": dc_status(s)}
            case "CurrentDemandReq":
                res = {"ResponseCode": "OK", "DC_EVSEStatus": dc_status(s),
                       "EVSEPresentVoltage": pv(self.present_voltage, "V", s),
                       "EVSEPresentCurrent": pv(20, "A", s),
                       "EVSECurrentLimitAchieved": False, "EVSEVoltageLimitAchieved": False,
                       "EVSEPowerLimitAchieved": False,
                       "EVSEMaximumVoltageLimit": pv(500, "V", s),
                       "EVSEMaximumCurrentLimit": pv(200, "A", s),
                       "EVSEMaximumPowerLimit": pv(100000, "W", s)}
                if s == "iso2":
                    res.update({"EVSEID": "ZZ00000", "SAScheduleTupleID": 7})
            case "WeldingDetectionReq":
                res = {"ResponseCode": "OK", "DC_EVSEStatus": dc_status(s),
                       "EVSEPresentVoltage": pv(10, "V", s)}
            case "SessionStopReq":
                res = {"ResponseCode": "OK"}
            case _:
                raise AssertionError(f"unexpected request {name}")
        return {"V2G_Message": {"Header": {"SessionID": self.session},
                                "Body": {name[:-3] + "Res": res}}}


# ---------------------------------------------------------------------- the charger behind sockets
class _SdpAnswer(asyncio.DatagramProtocol):
    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        ptype, _ = v2gtp.decode_datagram(data)
        if ptype == v2gtp.PAYLOAD_SDP_REQ:
            self.transport.sendto(self.reply, addr)


# tamper(request_name, count_of_that_request, response_tree) -> what to send:
#   a tree (possibly changed), bytes (sent as the raw V2GTP frame), "silent" or "reset"
Tamper = Callable[[str, int, dict[str, Any]], Any]


class ScriptedSecc:
    """SDP + TCP server on ::1 answering with `Charger`, encoded by the in-process EXI codec."""

    def __init__(self, tamper: Tamper | None = None, **charger_args: Any) -> None:
        self.tamper = tamper
        self.charger_args = charger_args
        self.charger: Charger | None = None
        self.protocol: str | None = None
        self.counts: dict[str, int] = {}
        self.connections = 0
        self.sdp: asyncio.BaseTransport | None = None
        self.server: asyncio.Server | None = None
        self.udp_port = 0
        self.tcp_port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "::1", 0)
        self.tcp_port = int(self.server.sockets[0].getsockname()[1])
        import socket

        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
            self.udp_port = int(s.getsockname()[1])
        loop = asyncio.get_running_loop()
        reply = sdp.response_frame(sdp.SdpResponse(ipaddress.IPv6Address("::1"), self.tcp_port))
        self.sdp, _ = await loop.create_datagram_endpoint(
            lambda: _SdpAnswer(reply), local_addr=("::1", self.udp_port))

    async def stop(self) -> None:
        if self.sdp is not None:
            self.sdp.close()
        if self.server is not None:
            self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import ccsbus_exi

        frames = v2gtp.V2gtpReader()
        self.protocol = None  # every connection starts with the handshake
        self.connections += 1
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                for _, payload in frames.feed(data):
                    if self.protocol is None:
                        req = ccsbus_exi.decode("apphand", payload)
                        entries = req["supportedAppProtocolReq"]["AppProtocol"]
                        args = dict(self.charger_args)
                        wanted = args.pop("protocol", None)
                        chosen = next(e for e in entries
                                      if wanted is None or
                                      e["ProtocolNamespace"] == apphand.PROTOCOLS[wanted].namespace)
                        self.protocol = apphand.BY_NAMESPACE[chosen["ProtocolNamespace"]].schema
                        self.charger = Charger(self.protocol, **args)
                        res = {"supportedAppProtocolRes": {
                            "ResponseCode": "OK_SuccessfulNegotiation",
                            "SchemaID": chosen["SchemaID"]}}
                        writer.write(v2gtp.encode(ccsbus_exi.encode("apphand", res)))
                        continue
                    assert self.charger is not None
                    request = ccsbus_exi.decode(self.protocol, payload)
                    name = next(iter(request["V2G_Message"]["Body"]))
                    self.counts[name] = self.counts.get(name, 0) + 1
                    response: Any = self.charger.answer(request)
                    if self.tamper is not None:
                        response = self.tamper(name, self.counts[name], response)
                    if response == "silent":
                        continue
                    if response == "reset":
                        import socket
                        import struct

                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                        writer.transport.abort()
                        return
                    if isinstance(response, bytes):
                        writer.write(response)
                    else:
                        writer.write(v2gtp.encode(ccsbus_exi.encode(self.protocol, response)))
                await writer.drain()
        except (ConnectionError, v2gtp.V2gtpError):
            return


# ---------------------------------------------------------------------- recording the bus
@dataclass
class Recorder:
    """Every message below `base` with its arrival time, from a plain MQTT client."""

    port: int
    base: str
    messages: list[tuple[float, str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        ready = threading.Event()

        def on_connect(*_: Any) -> None:
            self.client.subscribe(f"{self.base}/#", qos=1)
            ready.set()

        self.client.on_connect = on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", self.port, keepalive=5)
        self.client.loop_start()
        if not ready.wait(5):
            raise TimeoutError("recorder could not connect")
        time.sleep(0.1)  # let the subscription settle before the session starts

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((time.monotonic(), msg.topic[len(self.base) + 1:],
                                  bytes(msg.payload)))

    def publish(self, path: str, payload: str, retain: bool = False) -> None:
        self.client.publish(f"{self.base}/{path}", payload, qos=1, retain=retain).wait_for_publish(5)

    def values(self, path: str) -> list[str]:
        with self._lock:
            return [p.decode() for _, t, p in self.messages if t == path]

    def events(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(t, p.decode("utf-8", "replace")) for _, t, p in self.messages]

    def session_states(self) -> list[dict[str, Any]]:
        return [json.loads(v) for v in self.values("v2g/session") if v]

    def wait_session_end(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for state in self.session_states():
                if state.get("state") in ("Finished", "SafeShutdown"):
                    return state
            time.sleep(0.05)
        raise TimeoutError(f"no session end within {timeout} s; fsm: {self.values('fsm_state')}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def hw_events(events: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The car's hardware requests and the measured current, in bus order."""
    keep = ("cpstate", "relay_request", "lock_request")
    out: list[tuple[str, str]] = []
    for topic, payload in events:
        if topic in keep:
            out.append((topic, payload))
        elif topic == "hw/state" and payload:
            current = json.loads(payload).get("present_current")
            if isinstance(current, int | float):
                out.append(("current", f"{current:g}"))
    return out


def check_shutdown_order(events: list[tuple[str, str]], threshold: float = 1.0) -> str:
    """'' when the last stop ran cpstate B → current below threshold → relay off → unlock.

    The current step is satisfied by a hw/state reading below the threshold after B (or by no
    current ever having been measured, when the charger never delivered any).
    """
    hw = hw_events(events)
    try:
        b = max(i for i, e in enumerate(hw) if e == ("cpstate", "B"))
    except ValueError:
        return "cpstate B was never requested"
    after = hw[b:]
    try:
        off = after.index(("relay_request", "off"))
    except ValueError:
        return "relay_request off did not follow cpstate B"
    try:
        unlock = after.index(("lock_request", "unlock"))
    except ValueError:
        return "lock_request unlock did not follow cpstate B"
    if unlock < off:
        return "unlock came before relay off"
    currents = [float(v) for t, v in hw if t == "current"]
    if currents:
        low = [i for i, (t, v) in enumerate(after[:off]) if t == "current" and abs(float(v)) < threshold]
        before_b = [float(v) for t, v in hw[:b] if t == "current"]
        if not low and not (before_b and abs(before_b[-1]) < threshold):
            return "relay off came before the current was below the threshold"
    if any(e == ("relay_request", "on") for e in after):
        return "relay on after the stop"
    return ""


# ---------------------------------------------------------------------- the car side under test
@dataclass(frozen=True)
class PevOnlySettings:
    """The part of the v2g settings the PEV role reads."""

    evcc: EvccSettings = setting(default_factory=EvccSettings)
    wait_for_link: bool = False
    interface: str = "lo"
    codec: CodecMode = CodecMode.INPROCESS


class FakeCarHardware:
    """Answers the car's requests as the PEV hardware would: CP B stops the current, relay."""

    def __init__(self, port: int, base: str) -> None:
        self.base = base
        self.state: dict[str, Any] = {"backend": "test", "contactors": "open",
                                      "lock": "unlocked", "present_current": 0.0}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        ready = threading.Event()

        def on_connect(*_: Any) -> None:
            for path in ("cpstate", "relay_request", "lock_request"):
                self.client.subscribe(f"{base}/{path}", qos=1)
            ready.set()

        self.client.on_connect = on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        assert ready.wait(5)

    def _send(self) -> None:
        import time

        self.state["time"] = time.time()
        self.client.publish(f"{self.base}/hw/state", json.dumps(self.state), qos=1, retain=True)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        path = msg.topic[len(self.base) + 1:]
        value = msg.payload.decode()
        if path == "cpstate":
            # the charger follows CP: current flows in C once the contactors are closed
            on = value == "C" and self.state["contactors"] == "closed"
            self.state["present_current"] = 20.0 if on else 0.0
        elif path == "relay_request":
            self.state["contactors"] = "closed" if value == "on" else "open"
            if value == "on":
                self.state["present_current"] = 20.0
        elif path == "lock_request":
            self.state["lock"] = "locked" if value == "lock" else "unlocked"
        self._send()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def fast_settings(udp_port: int, **changes: Any) -> EvccSettings:
    timers = replace(EvccTimers(), V2G_EVCC_Msg_Timeout=1.0)
    base = replace(EvccSettings(), sdp_target="::1", sdp_port=udp_port, sdp_interval=0.1,
                   max_charge_time=0.6, current_demand_cycle=0.05, evccid="0A0B0C0D0E0F",
                   current_off_timeout=1.0, contactor_timeout=0.5, timers=timers)
    return replace(base, **changes)



async def run_pev_role(port: int, base: str, settings: Any, recorder: Recorder,
                       during: Any = None, timeout: float = 20.0) -> dict[str, Any]:
    """Run the v2g service in the PEV role in this process until its session ends."""
    stack = StackConfig(role=Role.PEV,
                        broker=BrokerConfig(url=f"mqtt://127.0.0.1:{port}", base_topic=base),
                        log=LogConfig(), sections={}, source="test")
    spec = ServiceSpec(name="v2g", settings=PevOnlySettings, run=pev_role.run)
    stopping = asyncio.Event()
    service = asyncio.create_task(serve(spec, stack, settings, stopping))
    try:
        if during is not None:
            await during()
        end = await asyncio.to_thread(recorder.wait_session_end, timeout)
        await asyncio.sleep(0.2)  # let the last topics arrive at the recorder
        return end
    finally:
        stopping.set()
        await service


# ---------------------------------------------------------------------- both stacks as processes
EVSE_BASE = "ccsbus/evse"
PEV_BASE = "ccsbus/pev"
PLUG_IN_DUTY = 5.0


def stack_configs(protocol: str, sdp_port: int, fault: str = "",
                  evcc: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """config/ccsbus.yaml contents of the EVSE and the PEV stack for a session on loopback.

    V2G_EVCC_Msg_Timeout is shortened (the no-response cases wait for it); the loop timers are
    shortened less, as a loaded 2-core machine runs six services here; the CurrentDemand timeout
    keeps the standard's 0.25 s.
    """
    evcc_timers = {"V2G_EVCC_Msg_Timeout": 1.0, "V2G_EVCC_CableCheck_Timeout": 20.0,
                   "V2G_EVCC_PreCharge_Timeout": 10.0, "V2G_EVCC_CommunicationSetup_Timeout": 15.0}
    evcc_section: dict[str, Any] = {
        "protocols": [protocol], "sdp_target": "::1", "sdp_port": sdp_port, "sdp_interval": 0.1,
        "stop_soc": 95.0, "max_charge_time": 4.0, "current_demand_cycle": 0.05,
        "current_off_timeout": 2.0, "contactor_timeout": 1.0, "timers": evcc_timers}
    evcc_section.update(evcc or {})
    # the supply's default slew (400 V/s) keeps PreCharge several requests long, which the
    # "PreChargeRes ... after 2" cases need
    hw_sim = {"isolation_time": 0.3, "current_slew": 1000.0, "start_soc": 40.0}
    evse = {"role": "EVSE", "log": {"level": "INFO"},
            "v2g": {"interface": "lo", "wait_for_link": False, "sdp_port": sdp_port,
                    "fault": fault, "protocols": [protocol]},
            "hw": {"backend": "sim", "cable_peer_base": PEV_BASE,
                   "sim": hw_sim}}
    pev = {"role": "PEV", "log": {"level": "INFO"},
           "v2g": {"interface": "lo", "wait_for_link": False, "evcc": evcc_section},
           "hw": {"backend": "sim", "cable_peer_base": EVSE_BASE, "sim": hw_sim}}
    return {"EVSE": evse, "PEV": pev}


class Stacks:
    """exi + hw + v2g of the EVSE stack and of the PEV stack, each service its own process."""

    def __init__(self, broker_url: str, workdir: Any, configs: dict[str, dict[str, Any]]) -> None:
        import yaml

        from ccsbus.stack import ServiceProcess, stack_env

        self.procs: dict[str, Any] = {}
        for side, base in (("EVSE", EVSE_BASE), ("PEV", PEV_BASE)):
            path = workdir / f"{side.lower()}.yaml"
            path.write_text(yaml.safe_dump(configs[side]))
            env = stack_env(broker_url, base, side, {"CCSBUS_CONFIG": str(path)})
            for name in ("exi", "hw", "v2g"):
                self.procs[f"{side}-{name}"] = ServiceProcess(
                    name, env, log_file=str(workdir / f"{side.lower()}-{name}.log"))
        self.workdir = workdir

    def start(self, keys: list[str]) -> None:
        for key in keys:
            self.procs[key].start()

    def dead(self) -> list[str]:
        return [k for k, p in self.procs.items() if p.proc is not None and not p.alive()]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.proc is not None:
                proc.stop()

    def logs(self, key: str, tail: int = 3000) -> str:
        path = self.workdir / f"{key.lower()}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""


def wait_status(recorder: Recorder, services: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all("online" in recorder.values(f"{s}/status") for s in services):
            return
        time.sleep(0.05)
    missing = [s for s in services if "online" not in recorder.values(f"{s}/status")]
    raise TimeoutError(f"services not online within {timeout} s: {missing}")


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        return int(s.getsockname()[1])


def plug_in(evse: Recorder, timeout: float = 10.0) -> None:
    """The charger's 5 % PWM is the plug-in the car's power stage sees.

    Repeated until the charger's cp/state shows it: a command sent the moment the hw service
    says `online` can arrive before the service has subscribed to hw/cmd.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        evse.publish("hw/cmd", json.dumps({"cmd": "pwm", "value": PLUG_IN_DUTY}))
        until = time.monotonic() + 0.5
        while time.monotonic() < until:
            for payload in evse.values("cp/state"):
                state = json.loads(payload) if payload else {}
                if state.get("duty") == PLUG_IN_DUTY and state.get("state") in ("B", "C"):
                    return
            time.sleep(0.02)
    raise TimeoutError(f"the charger's CP never showed {PLUG_IN_DUTY} % duty with a car in B")


@dataclass
class StackRun:
    end: dict[str, Any]
    pev_events: list[tuple[str, str]]
    evse_events: list[tuple[str, str]]
    seconds: float


def run_stacks(broker_port: int, workdir: Any, protocol: str, fault: str = "",
               evcc: dict[str, Any] | None = None, timeout: float = 40.0,
               at_state: tuple[str, Callable[[Stacks], None]] | None = None) -> StackRun:
    """Both stacks from start to the car's session end; processes stopped afterwards.

    `at_state` = (fsm_state of the car, action): the action runs once the car reached it.
    """
    started = time.monotonic()
    sdp_port = free_udp_port()
    configs = stack_configs(protocol, sdp_port, fault, evcc)
    pev_rec = Recorder(broker_port, PEV_BASE)
    evse_rec = Recorder(broker_port, EVSE_BASE)
    stacks = Stacks(f"mqtt://127.0.0.1:{broker_port}", workdir, configs)
    try:
        stacks.start(["EVSE-exi", "EVSE-hw", "PEV-exi", "PEV-hw", "EVSE-v2g"])
        wait_status(evse_rec, ["exi", "hw", "v2g"], 30)
        wait_status(pev_rec, ["exi", "hw"], 30)
        plug_in(evse_rec)
        stacks.start(["PEV-v2g"])
        try:
            if at_state is not None:
                state, action = at_state
                deadline = time.monotonic() + timeout
                while state not in pev_rec.values("fsm_state"):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the car never reached {state}")
                    time.sleep(0.02)
                action(stacks)
            end = pev_rec.wait_session_end(timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; dead: {stacks.dead()}\n--- PEV v2g:\n"
                               f"{stacks.logs('PEV-v2g')}\n--- EVSE v2g:\n"
                               f"{stacks.logs('EVSE-v2g')}") from None
        time.sleep(0.5)  # the hardware's last reactions reach the recorders
        return StackRun(end, pev_rec.events(), evse_rec.events(), time.monotonic() - started)
    finally:
        stacks.stop()
        pev_rec.close()
        evse_rec.close()
