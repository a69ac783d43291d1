"""The CAN bridge service: python-can bus I/O around the pure bridge logic of `bridge.py`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import can

from ccsbus.bus import PublishRefused
from ccsbus.config import ConfigError, setting
from ccsbus.lifecycle import ServiceContext, ServiceSpec

from .bridge import (
    BatteryVoltageSource,
    BoardBridge,
    ChademoBridge,
    ChademoParams,
    Output,
    Publish,
    Reject,
    Send,
)

# what each profile listens to on the bus
CHADEMO_INPUTS = ("charger_max_voltage", "charger_max_current", "charger_voltage",
                  "charger_current", "relay_request", "lock_request")
BOARD_INPUTS = ("soc", "target_voltage", "target_current", "charger_voltage", "charger_current",
                "evccid", "enabled", "v2g/session")

BUS_RETRY = 5.0  # seconds between attempts to open a CAN interface that is not there (yet)


@dataclass(frozen=True)
class CanSettings:
    interface: str = setting("socketcan", help="python-can interface: socketcan on boards; "
                             "virtual or udp_multicast for tests and benches")
    channel: str = setting("can0", help="CAN channel (socketcan: interface name; udp_multicast: "
                           "multicast group address)")
    bitrate: int = setting(500000, min=10000, max=1000000,
                           help="bit rate in bit/s (CHAdeMO: 500 kbit/s; socketcan takes it from "
                                "`ip link`)")
    options: dict[str, Any] = setting({}, help="extra python-can bus arguments, e.g. {port: 43113}")
    chademo: bool = setting(True, help="CHAdeMO profile (PEV role): car frames 0x100-0x102 to "
                            "topics, charger frames 0x108/0x109 from topics")
    board_frames: bool = setting(False, help="FoccciCape board frames 0x678/0x679/0x67A (EVSE role)")
    cycle_ms: int = setting(100, min=10, max=1000, help="frame cycle in ms (CHAdeMO: 100)")
    vehicle_timeout: float = setting(1.0, min=0.2, max=10,
                                     help="seconds without a car frame until current 0 and stop")
    protocol_number: int = setting(2, min=0, max=255, help="CHAdeMO protocol number sent in 0x109")
    welding_detection: bool = setting(True, help="announce welding detection support in 0x108")
    threshold_voltage: float = setting(500.0, min=0, max=1500,
                                       help="0x108 threshold voltage until the car names its maximum")
    battery_voltage_source: BatteryVoltageSource = setting(
        BatteryVoltageSource.TARGET_VOLTAGE,
        help="which car value becomes battery_voltage (CHAdeMO has no present battery voltage)")
    state_interval: float = setting(1.0, min=0.1, max=60, help="can/state heartbeat in seconds")

    def __post_init__(self) -> None:
        known = sorted(can.interfaces.VALID_INTERFACES)
        if self.interface not in known:
            raise ConfigError("can.interface", self.interface,
                              f"a python-can interface ({', '.join(known)}); the CAN device itself "
                              "(e.g. can0) goes in can.channel")


def open_bus(settings: CanSettings) -> can.BusABC:
    return can.Bus(interface=settings.interface, channel=settings.channel,
                   bitrate=settings.bitrate, **settings.options)


class _Runner:
    def __init__(self, ctx: ServiceContext[CanSettings]) -> None:
        self.ctx = ctx
        s = ctx.settings
        self.chademo: ChademoBridge | None = None
        self.board: BoardBridge | None = None
        if s.chademo and ctx.role == "PEV":
            self.chademo = ChademoBridge(ChademoParams(
                cycle=s.cycle_ms / 1000, vehicle_timeout=s.vehicle_timeout,
                protocol=s.protocol_number, welding_detection=s.welding_detection,
                threshold_voltage=s.threshold_voltage,
                battery_voltage_source=s.battery_voltage_source, state_interval=s.state_interval))
        if s.board_frames and ctx.role == "EVSE":
            self.board = BoardBridge(cycle=s.cycle_ms / 1000)
        self.can_bus: can.BusABC | None = None
        self.send_failing = False
        self.board_state_time = 0.0

    def profiles(self) -> list[str]:
        return (["chademo"] if self.chademo else []) + (["board"] if self.board else [])

    def check_roles(self) -> None:
        s, role = self.ctx.settings, self.ctx.role
        if s.chademo and role != "PEV":
            self.ctx.log.info("CHAdeMO profile off: it runs on a PEV stack", role=role)
        if s.board_frames and role != "EVSE":
            self.report("board_frames needs the EVSE role; the board profile stays off")

    def report(self, reason: str) -> None:
        self.ctx.log.warning(reason)
        self.ctx.bus.publish_error(reason)

    # ------------------------------------------------------------------ outputs
    def apply(self, outputs: list[Output]) -> None:
        for out in outputs:
            match out:
                case Send(can_id=can_id, data=data):
                    self.send(can_id, data)
                case Publish(path=path, value=value):
                    if isinstance(value, dict) and "time" in value:
                        value = {**value, "time": time.time()}  # the bridge counts monotonic time
                    if path == "can/event":
                        fields = {k: v for k, v in value.items() if k not in ("event", "time")}
                        self.ctx.log.info(f"can {value['event']}".replace("_", " "), **fields)
                    elif path == "v2g/cmd":
                        self.ctx.log.warning("stop requested", reason=value.get("value"))
                    try:
                        self.ctx.bus.publish(path, value)
                    except PublishRefused as exc:
                        self.report(str(exc))
                case Reject(reason=reason, can_id=can_id, data=data):
                    self.ctx.log.warning("rejected frame", can_id=f"0x{can_id:03X}", reason=reason)
                    self.ctx.bus.publish_error(reason, topic=f"can:0x{can_id:03X}",
                                               payload=data.hex().encode())

    def send(self, can_id: int, data: bytes) -> None:
        if self.can_bus is None:
            return
        try:
            self.can_bus.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=False),
                              timeout=0.02)
        except can.CanError as exc:
            if not self.send_failing:  # one report per failing episode
                self.send_failing = True
                self.report(f"CAN send failed: {exc}")
                self.apply([Publish("can/event", {"event": "send_failed", "reason": str(exc),
                                                  "time": 0.0})])
            return
        if self.send_failing:
            self.send_failing = False
            self.ctx.log.info("CAN send works again")

    # ------------------------------------------------------------------ loops
    def on_topic(self, path: str, value: Any) -> None:
        if self.chademo is not None:
            self.chademo.on_topic(path, value)
        if self.board is not None:
            self.board.on_topic(path, value)

    async def receive(self, reader: can.AsyncBufferedReader) -> None:
        async for msg in reader:
            if self.chademo is None or msg.is_error_frame or msg.is_remote_frame:
                continue
            try:
                self.apply(self.chademo.on_frame(msg.arbitration_id, bytes(msg.data),
                                                 time.monotonic()))
            except Exception as exc:  # one bad frame must not end the bridge
                self.ctx.log.exception("frame handling failed", can_id=msg.arbitration_id)
                self.ctx.bus.publish_error(f"frame handling failed: {exc}",
                                           topic=f"can:0x{msg.arbitration_id:03X}")

    async def clock(self) -> None:
        while not self.ctx.stopping.is_set():
            now = time.monotonic()
            deadlines = []
            if self.chademo is not None:
                self.apply(self.chademo.tick(now))
                deadlines.append(self.chademo.next_deadline())
            if self.board is not None:
                self.apply(self.board.tick(now))
                deadlines.append(self.board.next_deadline())
                if now - self.board_state_time >= self.ctx.settings.state_interval:
                    self.board_state_time = now
                    self.apply([Publish("can/state", {
                        "profiles": self.profiles(), "frames_tx": self.board.frames_tx,
                        "time": 0.0})])
            # wake at the next frame deadline, and often enough to notice a silent car in time
            wait = min([d - time.monotonic() for d in deadlines] + [0.05])
            await asyncio.sleep(max(wait, 0.001))

    async def open(self) -> can.BusABC | None:
        s = self.ctx.settings
        while not self.ctx.stopping.is_set():
            try:
                bus = open_bus(s)
            except (can.CanError, OSError, ValueError, ImportError) as exc:
                self.report(f"cannot open CAN {s.interface}:{s.channel}: {exc}; retrying in "
                            f"{BUS_RETRY:g} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.ctx.stopping.wait(), BUS_RETRY)
                continue
            self.ctx.log.info("CAN bus open", interface=s.interface, channel=s.channel,
                              profiles=self.profiles())
            return bus
        return None


async def run(ctx: ServiceContext[CanSettings]) -> None:
    runner = _Runner(ctx)
    runner.check_roles()
    inputs: set[str] = set()
    if runner.chademo is not None:
        inputs.update(CHADEMO_INPUTS)
    if runner.board is not None:
        inputs.update(BOARD_INPUTS)
    for path in sorted(inputs):
        ctx.bus.subscribe(path, runner.on_topic)
    if not runner.profiles():
        ctx.log.info("no CAN profile for this role; idle", role=ctx.role)
        await ctx.stopping.wait()
        return
    bus = await runner.open()
    if bus is None:
        return
    runner.can_bus = bus
    reader = can.AsyncBufferedReader()
    notifier = can.Notifier(bus, [reader], timeout=0.1, loop=asyncio.get_running_loop())
    tasks = [asyncio.create_task(runner.receive(reader)), asyncio.create_task(runner.clock())]
    try:
        await ctx.stopping.wait()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        notifier.stop(timeout=0.5)
        runner.can_bus = None
        bus.shutdown()


SPEC = ServiceSpec(
    name="can",
    settings=CanSettings,
    run=run,
    description="CAN bridge: CHAdeMO car <-> ccsbus PEV stack (CCS-to-CHAdeMO adapter) and the "
                "FoccciCape board frames of an EVSE stack.",
)
