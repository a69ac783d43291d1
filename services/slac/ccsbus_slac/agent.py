"""A SLAC endpoint without a broker, driven by lines on stdin and reporting JSON lines on stdout.

For namespace benches, interop tests and field checks (`python -m ccsbus_slac.agent --role PEV
--interface eth1`). Commands: `start`, `stop`, `quit`. Events: `ready` (modem found), `state`,
`link_up`, `link_down`, `failed`, `error` (no modem / no link; the agent exits with status 3).
Each event carries `t`, a CLOCK_MONOTONIC timestamp comparable across processes of one host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import yaml

from ccsbus.config import ConfigError, parse_dataclass
from ccsbus.log import setup_logging

from .driver import Driver, ModemNotFound
from .fsm import Failed, LinkDown, LinkUp, Machine
from .link import LinkError
from .mme import mac_text
from .service import make_link
from .settings import SlacSettings

EXIT_NO_MODEM = 3


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


def build_settings(args: argparse.Namespace) -> SlacSettings:
    raw: dict[str, Any] = {"interface": args.interface, "link": args.link}
    if args.udp:
        host, _, port = args.udp.rpartition(":")
        raw.update(link="udp", udp_host=host or "127.0.0.1", udp_port=int(port))
    for item in args.set:
        key, _, value = item.partition("=")
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return parse_dataclass(SlacSettings, raw, "slac")


async def run(args: argparse.Namespace, settings: SlacSettings) -> int:
    driver = Driver(args.role, make_link(settings), settings)
    began = time.monotonic()
    try:
        await driver.open()
        info = await driver.discover()
    except (LinkError, ModemNotFound) as exc:
        emit("error", reason=str(exc), waited=round(time.monotonic() - began, 3))
        await driver.close()
        return EXIT_NO_MODEM

    def state(machine: Machine) -> None:
        emit("state", state=machine.state.name)

    def up(action: LinkUp) -> None:
        emit("link_up", peer_mac=mac_text(action.peer_mac), nid=action.nid.hex(),
             attenuation=driver.machine.snapshot()["attenuation_avg"])

    def down(action: LinkDown) -> None:
        emit("link_down", reason=action.reason)

    def failed(action: Failed) -> None:
        emit("failed", reason=action.reason)

    driver.on_state.append(state)
    driver.on_link_up.append(up)
    driver.on_link_down.append(down)
    driver.on_failed.append(failed)
    emit("ready", host_mac=mac_text(driver.link.mac), **info.as_dict())
    if args.start or args.role == "LISTEN":
        driver.start("agent start")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            match line.decode().strip():
                case "start":
                    driver.start("agent start")
                case "stop":
                    driver.stop("agent stop")
                case "quit":
                    break
                case "":
                    continue
                case other:
                    emit("bad_command", command=other)
    finally:
        await driver.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ccsbus_slac.agent", description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["EVSE", "PEV", "LISTEN"], required=True)
    parser.add_argument("--interface", default="eth1")
    parser.add_argument("--link", choices=["pcap", "udp"], default="pcap")
    parser.add_argument("--udp", help="HOST:PORT of a vmodem UDP port (implies --link udp)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a slac setting, e.g. timers.TT_match_join=3 (repeat)")
    parser.add_argument("--start", action="store_true", help="start matching at once")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    setup_logging(args.log_level, stream=sys.stderr)
    try:
        settings = build_settings(args)
    except ConfigError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run(args, settings))


if __name__ == "__main__":
    sys.exit(main())
