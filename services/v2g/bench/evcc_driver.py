"""A scripted DC car for benches and interop tests: the whole DIN / ISO-2 sequence against any SECC.

It is deliberately not the product's EVCC: it has no MQTT, no hardware and no timers of its own,
just the message sequence, so the same driver can time our SECC and other SECCs alike. EXI runs
in process (the ccsbus_exi binding) and is encoded before the clock starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import ccsbus_exi
from ccsbus_v2g import apphand, sdp, v2gtp
from ccsbus_v2g.physical import from_float, to_float


class DriverError(Exception):
    """The SECC answered something a car would stop on."""


@dataclass
class DriverResult:
    protocol: str
    messages: int = 0
    current_demand_ms: list[float] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)  # of each response, in order


def _pv(schema: str, x: float, unit: str) -> dict[str, Any]:
    return from_float(x, unit, schema)


def _status(soc: int, ready: bool = True) -> dict[str, Any]:
    return {"EVReady": ready, "EVErrorCode": "NO_ERROR", "EVRESSSOC": soc}


async def sdp_discover(target: str, port: int = sdp.SDP_PORT, interface: str | None = None,
                       tries: int = 20) -> tuple[str, int]:
    """(address, tcp port) from an SDP exchange; address carries %interface when link-local."""
    scope = socket.if_nametoindex(interface) if interface else 0
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setblocking(False)
    if interface:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, scope)
    loop = asyncio.get_running_loop()
    try:
        for _ in range(tries):
            sock.sendto(sdp.request_frame(sdp.SdpRequest()), (target, port, 0, scope))
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 100), 0.25)
            except TimeoutError:
                continue
            _, payload = v2gtp.decode_datagram(data)
            res = sdp.parse_response(payload)
            addr = str(res.address)
            if res.address.is_link_local and interface:
                addr = f"{addr}%{interface}"
            return addr, res.port
    finally:
        sock.close()
    raise DriverError(f"no SDP response from {target}")


class Driver:
    def __init__(self, protocol: str, target_voltage: float = 380.0,
                 target_current: float = 50.0) -> None:
        self.schema = protocol
        self.din = protocol == "din"
        self.target_voltage = target_voltage
        self.target_current = target_current
        self.session_id = "00" if self.din else "0000000000000000"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.framer = v2gtp.V2gtpReader()
        self.result = DriverResult(protocol)

    async def connect(self, host: str, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection(host, port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()

    async def _exchange(self, schema: str, tree: dict[str, Any], timeout: float = 5.0
                        ) -> tuple[dict[str, Any], float]:
        assert self.reader is not None and self.writer is not None
        frame = v2gtp.encode(ccsbus_exi.encode(schema, tree))
        start = time.perf_counter()
        self.writer.write(frame)
        pending: list[tuple[int, bytes]] = []
        while not pending:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise DriverError("the SECC closed the connection")
            pending = self.framer.feed(data)
        elapsed = (time.perf_counter() - start) * 1000
        self.result.messages += 1
        return ccsbus_exi.decode(schema, pending[0][1]), elapsed

    async def handshake(self) -> None:
        res, _ = await self._exchange("apphand", apphand.build_request([self.schema]))
        if apphand.parse_response(res, [self.schema]) is None:
            raise DriverError(f"the SECC refused {self.schema}")

    async def request(self, name: str, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
        tree = {"V2G_Message": {"Header": {"SessionID": self.session_id}, "Body": {name: body}}}
        res, elapsed = await self._exchange(self.schema, tree)
        msg = res["V2G_Message"]
        (res_name, res_body), = msg["Body"].items()
        self.result.names.append(res_name)
        self.result.session_ids.append(str(msg["Header"]["SessionID"]))
        if name == "SessionSetupReq":
            self.session_id = msg["Header"]["SessionID"]
        code = str(res_body.get("ResponseCode", ""))
        if not code.startswith("OK"):
            raise DriverError(f"{res_name} {code}")
        return res_body, elapsed

    async def until_finished(self, name: str, body: dict[str, Any], tries: int = 400) -> None:
        for _ in range(tries):
            res, _ = await self.request(name, body)
            if res.get("EVSEProcessing") != "Ongoing":
                return
            await asyncio.sleep(0.05)
        raise DriverError(f"{name} stayed Ongoing")

    def _dc_charge_parameter(self) -> dict[str, Any]:
        s = self.schema
        params: dict[str, Any] = {
            "DC_EVStatus": _status(30, False),
            "EVMaximumCurrentLimit": _pv(s, 200.0, "A"),
            "EVMaximumVoltageLimit": _pv(s, 450.0, "V"),
            "EVEnergyCapacity": _pv(s, 60000.0, "Wh"),
            "EVEnergyRequest": _pv(s, 30000.0, "Wh"),
            "FullSOC": 100,
            "BulkSOC": 80,
        }
        if not self.din:
            params["EVMaximumPowerLimit"] = _pv(s, 90000.0, "W")
        return params

    def _current_demand(self, soc: int) -> dict[str, Any]:
        s = self.schema
        return {
            "DC_EVStatus": _status(soc),
            "EVTargetCurrent": _pv(s, self.target_current, "A"),
            "EVMaximumVoltageLimit": _pv(s, 450.0, "V"),
            "EVMaximumCurrentLimit": _pv(s, 200.0, "A"),
            "EVMaximumPowerLimit": _pv(s, 90000.0, "W"),
            "BulkChargingComplete": False,
            "ChargingComplete": False,
            "RemainingTimeToFullSoC": _pv(s, 1800.0, "s"),
            "RemainingTimeToBulkSoC": _pv(s, 1200.0, "s"),
            "EVTargetVoltage": _pv(s, self.target_voltage, "V"),
        }

    def _power_delivery(self, start: bool) -> dict[str, Any]:
        if self.din:
            return {"ReadyToChargeState": start, "DC_EVPowerDeliveryParameter": {
                "DC_EVStatus": _status(50), "BulkChargingComplete": False,
                "ChargingComplete": not start}}
        return {"ChargeProgress": "Start" if start else "Stop", "SAScheduleTupleID": 1,
                "DC_EVPowerDeliveryParameter": {"DC_EVStatus": _status(50),
                                                "ChargingComplete": not start}}

    async def run(self, cycles: int, cycle_pause: float = 0.0) -> DriverResult:
        """The whole session; CurrentDemand `cycles` times, each round trip timed."""
        s = self.schema
        await self.handshake()
        await self.request("SessionSetupReq", {"EVCCID": "0A1B2C3D4E5F"})
        await self.request("ServiceDiscoveryReq", {"ServiceCategory": "EVCharging"} if self.din
                           else {})
        await self.request("ServicePaymentSelectionReq" if self.din else "PaymentServiceSelectionReq",
                           {"SelectedPaymentOption": "ExternalPayment",
                            "SelectedServiceList": {"SelectedService": [{"ServiceID": 1}]}})
        await self.until_finished("ContractAuthenticationReq" if self.din else "AuthorizationReq",
                                  {})
        await self.until_finished("ChargeParameterDiscoveryReq", {
            ("EVRequestedEnergyTransferType" if self.din else "RequestedEnergyTransferMode"):
                "DC_extended",
            "DC_EVChargeParameter": self._dc_charge_parameter()})
        await self.until_finished("CableCheckReq", {"DC_EVStatus": _status(30)})
        for _ in range(200):
            res, _ = await self.request("PreChargeReq", {
                "DC_EVStatus": _status(30), "EVTargetVoltage": _pv(s, self.target_voltage, "V"),
                "EVTargetCurrent": _pv(s, 1.0, "A")})
            if abs(to_float(res["EVSEPresentVoltage"]) - self.target_voltage) < 20:
                break
            await asyncio.sleep(0.05)
        await self.request("PowerDeliveryReq", self._power_delivery(True))
        for i in range(cycles):
            _, elapsed = await self.request("CurrentDemandReq", self._current_demand(30 + i % 60))
            self.result.current_demand_ms.append(elapsed)
            if cycle_pause:
                await asyncio.sleep(cycle_pause)
        await self.request("PowerDeliveryReq", self._power_delivery(False))
        await self.request("WeldingDetectionReq", {"DC_EVStatus": _status(90)})
        await self.request("SessionStopReq", {} if self.din else {"ChargingSession": "Terminate"})
        return self.result


async def run_session(host: str, port: int, protocol: str, cycles: int = 10,
                      cycle_pause: float = 0.0) -> DriverResult:
    driver = Driver(protocol)
    await driver.connect(host, port)
    try:
        return await driver.run(cycles, cycle_pause)
    finally:
        await driver.close()
