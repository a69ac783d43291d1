"""Start, run and stop one service: config, logging, bus, signals, exit codes.

A service is an async function `run(ctx)` that returns when `ctx.stopping` is set. Everything that
every service needs around it lives here, so services hold only their own logic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from .broker import EmbeddedBroker
from .bus import Bus
from .config import EXIT_CONFIG_ERROR, ConfigError, StackConfig, describe, load_config
from .log import EventLog, get_logger, setup_logging

S = TypeVar("S")

SHUTDOWN_GRACE = 1.5  # seconds; the whole exit must stay within 2 s of SIGTERM

# The MQTT client's network thread hands every message to the asyncio thread. With Python's default
# 5 ms GIL switch interval that handoff alone cost 1-8 ms per message on a loaded 2-core machine;
# 0.5 ms brings it to ~0.2 ms, well inside the 25 ms a charger has for a CurrentDemandRes.
GIL_SWITCH_INTERVAL = 0.0005


@dataclass
class ServiceContext(Generic[S]):
    name: str
    stack: StackConfig
    settings: S
    bus: Bus
    log: EventLog
    stopping: asyncio.Event

    @property
    def role(self) -> str:
        return self.stack.role.value


RunFn = Callable[[ServiceContext[Any]], Awaitable[None]]


@dataclass(frozen=True)
class ServiceSpec(Generic[S]):
    """What the CLI needs to know to run a service."""

    name: str
    settings: type[S]
    run: Callable[[ServiceContext[S]], Awaitable[None]]
    description: str = ""


def settings_help(spec: ServiceSpec[Any]) -> str:
    """The service's config keys with type, default and meaning, for --help."""
    lines = [f"settings (section `{spec.name}:` of the config file; environment "
             f"CCSBUS__{spec.name.upper()}__<KEY>):"]
    for key, kind, default, text in describe(spec.settings, spec.name):
        lines.append(f"  {key} ({kind}, default {default})")
        if text:
            lines.append(f"      {text}")
    return "\n".join(lines)


def build_parser(spec: ServiceSpec[Any]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"ccsbus run {spec.name}", description=spec.description,
                                     epilog=settings_help(spec),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", help="config file (default: $CCSBUS_CONFIG or config/ccsbus.yaml)")
    parser.add_argument("--role", choices=["EVSE", "PEV", "LISTEN"], help="override the stack role")
    parser.add_argument("--broker", help="broker URL (overrides broker.url; empty = embedded broker)")
    parser.add_argument("--base-topic", help="override broker.base_topic")
    return parser


def load_for(spec: ServiceSpec[S], args: argparse.Namespace) -> tuple[StackConfig, S]:
    stack = load_config(args.config)
    if args.role:
        stack = replace(stack, role=type(stack.role)(args.role))
    if args.broker is not None or args.base_topic:
        stack = replace(stack, broker=replace(
            stack.broker,
            url=stack.broker.url if args.broker is None else args.broker,
            base_topic=args.base_topic or stack.broker.base_topic,
        ))
    return stack, stack.section(spec.name, spec.settings)


async def serve(spec: ServiceSpec[S], stack: StackConfig, settings: S,
                stopping: asyncio.Event | None = None) -> None:
    """Run one service until `stopping` is set (or SIGTERM/SIGINT arrive when run from `main`)."""
    log = get_logger(spec.name)
    stopping = stopping or asyncio.Event()
    embedded: EmbeddedBroker | None = None
    broker_cfg = stack.broker
    if not broker_cfg.url:
        embedded = EmbeddedBroker(port=broker_cfg.embedded_port)
        await embedded.start()
        broker_cfg = replace(broker_cfg, url=embedded.url)
    bus = Bus(spec.name, broker_cfg, stack.role.value, log=log, announce=False)
    ctx = ServiceContext(spec.name, stack, settings, bus, log, stopping)
    await bus.start()
    log.info("service started", role=stack.role.value, base=broker_cfg.base_topic)
    task: asyncio.Task[None] = asyncio.ensure_future(spec.run(ctx))
    # let run() reach its first await: services subscribe before that, and `online` promises that
    # whoever sees it may send a command at once (the SUBSCRIBE packets go out before this PUBLISH)
    for _ in range(3):
        await asyncio.sleep(0)
    bus.announce_online()
    stop_wait = asyncio.create_task(stopping.wait())
    try:
        done, _ = await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # a service that returns by itself is done; errors propagate
        else:
            try:
                await asyncio.wait_for(asyncio.shield(task), SHUTDOWN_GRACE)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        stop_wait.cancel()
        await bus.close()
        if embedded is not None:
            await embedded.stop()
        log.info("service stopped")


def main(spec: ServiceSpec[Any], argv: list[str] | None = None) -> int:
    parser = build_parser(spec)
    args = parser.parse_args(argv)
    try:
        stack, settings = load_for(spec, args)
    except ConfigError as exc:
        setup_logging()
        print(f"ccsbus {spec.name}: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    setup_logging(stack.log.level.value, stack.log.json)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)

    async def runner() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await serve(spec, stack, settings, stopping)

    try:
        asyncio.run(runner())
    except ConfigError as exc:
        print(f"ccsbus {spec.name}: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    return 0
