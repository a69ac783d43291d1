"""Run a stack: the embedded broker (when no URL is configured) and each service as its own process.

Each service runs in its own OS process, as in the container deployment, so a crash of one never takes
another down and the safety service never depends on the others being alive.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .broker import EmbeddedBroker, free_port
from .bus import Bus
from .config import EXIT_CONFIG_ERROR, BrokerConfig, ConfigError, load_config
from .log import get_logger, setup_logging

log = get_logger("stack")


@dataclass
class ServiceProcess:
    """One `ccsbus run <service>` child process."""

    name: str
    env: Mapping[str, str]
    args: Sequence[str] = ()
    log_file: str | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        out = open(self.log_file, "ab") if self.log_file else None  # noqa: SIM115 - closed in stop
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ccsbus", "run", self.name, *self.args],
            env={**os.environ, **self.env}, stdout=out or None, stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
        self._out = out

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 3.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._out is not None:
            self._out.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def stack_env(url: str, base_topic: str, role: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {"CCSBUS__BROKER__URL": url, "CCSBUS__BROKER__BASE_TOPIC": base_topic, "CCSBUS__ROLE": role}
    env.update(extra or {})
    return env


async def wait_online(broker: BrokerConfig, services: Sequence[str], timeout: float) -> set[str]:
    """Wait until every service says `online`; return the ones that did."""
    bus = Bus("external", broker, "EVSE", log=get_logger("stack"))
    online: set[str] = set()
    done = asyncio.Event()

    def on_status(path: str, value: str) -> None:
        service = path.split("/", 1)[0]
        if value == "online":
            online.add(service)
        else:
            online.discard(service)
        if set(services) <= online:
            done.set()

    for name in services:
        bus.subscribe(f"{name}/status", on_status)
    await bus.start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout)
    await bus.close()
    return online


async def _up(args: argparse.Namespace) -> int:
    stack = load_config(args.config)
    role = args.role or stack.role.value
    broker_cfg = stack.broker
    embedded = None
    if not broker_cfg.url:
        embedded = EmbeddedBroker(port=free_port() if args.any_port else broker_cfg.embedded_port)
        await embedded.start()
        from dataclasses import replace

        broker_cfg = replace(broker_cfg, url=embedded.url)
    env = stack_env(broker_cfg.url, broker_cfg.base_topic, role)
    if args.config:
        env["CCSBUS_CONFIG"] = os.path.abspath(args.config)
    procs = [ServiceProcess(name, env) for name in args.services]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    online = await wait_online(broker_cfg, args.services, timeout=15)
    log.info("stack ready" if len(online) == len(procs) else "stack partly up",
             online=sorted(online), seconds=round(time.monotonic() - started, 2), broker=broker_cfg.url)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    watcher = Bus("external", broker_cfg, role, log=get_logger("live"))

    def show(path: str, payload: bytes) -> None:
        print(f"{time.strftime('%H:%M:%S')} {path} {payload[:160].decode('utf-8', 'replace')}", flush=True)

    watcher.subscribe("#", show, raw=True)
    await watcher.start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), args.seconds)
    await watcher.close()
    for proc in procs:
        proc.stop()
    if embedded is not None:
        await embedded.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ccsbus up",
        description="Start the configured services as separate processes (and the embedded broker "
                    "when broker.url is empty) and print every topic live until Ctrl-C.")
    parser.add_argument("-c", "--config", help="config file")
    parser.add_argument("--role", choices=["EVSE", "PEV", "LISTEN"])
    parser.add_argument("--services", type=lambda s: [x for x in s.split(",") if x],
                        default=["exi", "hw", "slac", "v2g"], help="comma-separated service ids")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--any-port", action="store_true", help="embedded broker on a free port")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        return asyncio.run(_up(args))
    except ConfigError as exc:
        print(f"ccsbus up: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR


def broker_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ccsbus broker",
                                     description="Run the embedded MQTT 3.1.1 broker (amqtt) alone.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    args = parser.parse_args(argv)
    setup_logging()
    from .broker import serve_forever

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(args.host, args.port))
    return 0
