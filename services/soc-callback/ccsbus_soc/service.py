"""SmartEVSE SoC forwarder: the car's SoC and energies from an EVSE stack to SmartEVSE's /ev_state."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ccsbus.bus import PublishRefused
from ccsbus.config import ConfigError, setting
from ccsbus.lifecycle import ServiceContext, ServiceSpec

from . import http
from .forwarder import Forwarder, ForwardPolicy
from .values import EvValues, Variant, collect, target

INPUTS = ("soc", "battery_capacity", "evccid", "v2g/session")


@dataclass(frozen=True)
class SocSettings:
    endpoint: str = setting("", help="SmartEVSE URL, e.g. http://smartevse.local/ev_state; empty: off")
    variant: Variant = setting(Variant.V3, help="v3: POST the values in the query string; "
                               "v4: GET ?update_ev_state=1 (the wallbox reads the values itself)")
    timeout: float = setting(3.0, min=0.1, max=60, help="seconds for the whole HTTP exchange")
    retry_min: float = setting(1.0, min=0.01, max=600, help="first back-off after a failure, seconds")
    retry_max: float = setting(60.0, min=0.01, max=3600, help="longest back-off, seconds")
    min_interval: float = setting(1.0, min=0, max=600,
                                  help="at least this long between two requests (changes coalesce)")
    capacity_fallback_wh: float = setting(-1, min=-1, max=1e6,
                                          help="energy_capacity (Wh) when the car reports none; -1 unknown")

    def __post_init__(self) -> None:
        if self.endpoint:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError("soc.endpoint", self.endpoint, "an http:// or https:// URL or empty")
        if self.retry_max < self.retry_min:
            raise ConfigError("soc.retry_max", self.retry_max, f"a number >= retry_min ({self.retry_min:g})")


async def run(ctx: ServiceContext[SocSettings]) -> None:
    s = ctx.settings

    def publish_state(state: dict[str, Any]) -> None:
        try:
            ctx.bus.publish("soc/state", state)
        except PublishRefused as exc:
            ctx.log.warning("state refused", reason=str(exc))

    async def send(method: str, url: str) -> http.Response:
        return await http.request(method, url, s.timeout)

    forwarder = Forwarder(send, ForwardPolicy(s.retry_min, s.retry_max, s.min_interval), ctx.log,
                          publish_state, s.endpoint, s.variant.value,
                          on_refused=lambda reason: ctx.bus.publish_error(reason))
    if ctx.role != "EVSE":
        ctx.log.info("SoC forwarding runs on an EVSE stack; idle", role=ctx.role)
        await ctx.stopping.wait()
        return
    publish_state(forwarder.state())
    if not s.endpoint:
        ctx.log.info("no soc.endpoint configured; idle")
        await ctx.stopping.wait()
        return
    values = EvValues()

    def on_topic(path: str, value: Any) -> None:
        nonlocal values
        values = collect(values, path, value)
        forwarder.offer(target(s.endpoint, s.variant, values, s.capacity_fallback_wh))

    for path in INPUTS:
        ctx.bus.subscribe(path, on_topic)
    ctx.log.info("forwarding to SmartEVSE", endpoint=s.endpoint, variant=s.variant.value)
    worker = asyncio.create_task(forwarder.run(ctx.stopping))
    await ctx.stopping.wait()
    # an exchange still running is abandoned: it cannot hold up the stop beyond its own timeout
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker


SPEC = ServiceSpec(
    name="soc",
    settings=SocSettings,
    run=run,
    description="Forward the car's SoC and energies of an EVSE stack to SmartEVSE (/ev_state).",
)
