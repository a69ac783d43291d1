"""The hw service: physical signals, the simulated power stage and the safety invariants."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from ccsbus.bus import PublishRefused
from ccsbus.config import ConfigError
from ccsbus.lifecycle import ServiceContext, ServiceSpec

from .backends import make_backend
from .backends.mqtt import MqttBackend
from .cable import PeerLink
from .controller import HwController
from .safety import Side
from .settings import Backend, HwSettings

STOP_GRACE = 1.2  # s of safe-shutdown ticking on SIGTERM (the lifecycle allows 1.5 s)


def subscriptions(side: Side, backend_inputs: tuple[str, ...] = ()) -> list[str]:
    paths = ["v2g/status", "hw/cmd"]
    if side is Side.PEV:
        paths += ["cpstate", "relay_request", "lock_request", "charger_current",
                  "battery_voltage"]
    else:
        # charger_current: a supply outside this service (CAN bridge, user) reports its current
        paths += ["target_voltage", "target_current", "charger_current"]
    return paths + [p for p in backend_inputs if p not in paths]


async def run(ctx: ServiceContext[HwSettings]) -> None:
    settings, log, bus = ctx.settings, ctx.log, ctx.bus
    if ctx.role not in ("EVSE", "PEV"):
        log.info("no hardware to drive in this role", role=ctx.role)
        await ctx.stopping.wait()
        return
    side = Side(ctx.role)
    if settings.backend is Backend.DIETER and settings.adc_volts_per_count <= 0:
        raise ConfigError("hw.adc_volts_per_count", settings.adc_volts_per_count,
                          "the calibrated inlet volts per A0 count (> 0) for the dieter board")
    peer: PeerLink | None = None
    if settings.backend is Backend.SIM and settings.cable_peer_base:
        peer = PeerLink(side, bus.broker, settings.cable_peer_base,
                        stale_after=3 * settings.state_interval)
        peer.start()
    backend = None
    while backend is None:
        try:
            backend = make_backend(settings, side, peer)
        except (OSError, ValueError) as exc:
            log.error("hardware backend unavailable, retrying", backend=settings.backend.value,
                      error=str(exc))
            bus.publish_error(f"backend {settings.backend.value}: {exc}")
            try:
                await asyncio.wait_for(ctx.stopping.wait(), 5.0)
                return
            except TimeoutError:
                continue

    def publish(path: str, value: Any) -> None:
        try:
            bus.publish(path, value)
        except PublishRefused as exc:
            log.error("publish refused", topic=path, reason=str(exc))

    def report_error(reason: str, topic: str | None) -> None:
        bus.publish_error(reason, topic=topic)

    ctl = HwController(side, settings, backend, publish, report_error, log)
    inputs = backend.inputs() if isinstance(backend, MqttBackend) else ()
    for path in subscriptions(side, inputs):
        bus.subscribe(path, ctl.on_topic)
    bus.connection_changes.append(ctl.on_connection)
    ctl.on_connection(bus.connected.is_set())
    log.info("hw running", backend=backend.name, role=side.value,
             cable_peer=settings.cable_peer_base or None)
    try:
        while not ctx.stopping.is_set():
            start = time.monotonic()
            ctl.tick(start)
            delay = settings.tick - (time.monotonic() - start)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ctx.stopping.wait(), delay)
            else:
                await asyncio.sleep(0)
        out = ctl.machine.out
        if out.contactors_closed or out.lock:
            # leaving with energy on the wires: run the sequence for as long as we may
            ctl.machine.request_safe_shutdown()
            deadline = time.monotonic() + STOP_GRACE
            while time.monotonic() < deadline and (ctl.machine.out.contactors_closed
                                                    or ctl.machine.out.lock):
                ctl.tick(time.monotonic())
                await asyncio.sleep(settings.tick)
    finally:
        backend.close()
        if peer is not None:
            peer.close()


SPEC = ServiceSpec(
    name="hw",
    settings=HwSettings,
    run=run,
    description="Hardware signals (CP, contactors, lock, inlet voltage, supply), the simulated power "
                "stage and battery, and the safety invariants with their watchdog.",
)
