"""Home Assistant discovery publisher (service id `ha`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ccsbus import __version__
from ccsbus.bus import PublishRefused
from ccsbus.config import ConfigError, setting
from ccsbus.contract import EXTERNAL, load_contract
from ccsbus.lifecycle import ServiceContext, ServiceSpec

from .discovery import HA_STATUS_PATH, ONLINE, DeviceInfo, build_discovery, default_device_id, discovery_path

FLUSH = 0.2  # seconds for the removal to leave before the connection closes


@dataclass(frozen=True)
class HaSettings:
    enabled: bool = setting(True, help="publish the discovery; false removes it (empty retained payload)")
    device_id: str = setting("", help="Home Assistant device id; empty: ccsbus_<base topic>_<role>")
    device_name: str = setting("", help="device name shown in Home Assistant; empty: ccsbus <role> (<base>)")
    remove_on_stop: bool = setting(False, help="remove the device from Home Assistant when stopped")
    services: list[str] = setting(["slac", "v2g", "exi", "hw"],
                                  help="services whose status topics become connectivity sensors")

    def __post_init__(self) -> None:
        known = set(load_contract().services) - {EXTERNAL}
        for i, name in enumerate(self.services):
            if name not in known:
                raise ConfigError(f"ha.services[{i}]", name, "one of " + ", ".join(sorted(known)))
        if self.device_id and not all(c.isalnum() or c in "_-" for c in self.device_id):
            raise ConfigError("ha.device_id", self.device_id, "letters, digits, _ and -")


def discovery_for(ctx: ServiceContext[HaSettings]) -> tuple[str, dict[str, Any]]:
    s = ctx.settings
    base = ctx.bus.contract.base
    device_id = s.device_id or default_device_id(base, ctx.role)
    device = DeviceInfo(device_id, s.device_name or f"ccsbus {ctx.role} ({base})", __version__)
    return discovery_path(device_id), build_discovery(ctx.bus.contract, ctx.role, device, list(s.services))


async def run(ctx: ServiceContext[HaSettings]) -> None:
    path, payload = discovery_for(ctx)
    if not ctx.settings.enabled:
        ctx.bus.clear(path)
        ctx.log.info("discovery removed (ha.enabled is false)", topic=path)
        await ctx.stopping.wait()
        return

    def publish(reason: str) -> None:
        try:
            ctx.bus.publish(path, payload)
        except PublishRefused as exc:
            ctx.log.error("discovery refused", reason=str(exc))
            ctx.bus.publish_error(str(exc), topic=path)
            return
        ctx.log.info("discovery published", topic=path, components=len(payload["cmps"]), reason=reason)

    def on_ha_status(_: str, value: str) -> None:
        # Home Assistant forgets non-retained state on restart; it says `online` when it wants it again
        if value == ONLINE:
            publish("homeassistant online")

    ctx.bus.subscribe(HA_STATUS_PATH, on_ha_status)
    publish("start")
    await ctx.stopping.wait()
    if ctx.settings.remove_on_stop:
        ctx.bus.clear(path)
        ctx.log.info("discovery removed on stop", topic=path)
        await asyncio.sleep(FLUSH)


SPEC = ServiceSpec(
    name="ha",
    settings=HaSettings,
    run=run,
    description="Publish Home Assistant MQTT device discovery for this stack, from the topic contract.",
)
