"""The `ccsbus` command: one entry point for every service and tool.

Subcommands import their module only when called, so `ccsbus contract` does not pay for the codec
and a broken optional service does not break the others.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

# service id -> module holding its ServiceSpec named SPEC
SERVICES: dict[str, str] = {
    "slac": "ccsbus_slac.service",
    "v2g": "ccsbus_v2g.service",
    "exi": "ccsbus_exi.service",
    "hw": "ccsbus_hw.service",
    "can": "ccsbus_can.service",
    "soc": "ccsbus_soc.service",
    "ha": "ccsbus_ha.service",
}

# tool name -> (module with main(argv) -> int, one-line help)
TOOLS: dict[str, tuple[str, str]] = {
    "sim": ("ccsbus_tools.sim", "run a whole simulated charging session (EVSE + PEV stacks)"),
    "up": ("ccsbus.stack", "start a stack of services (and the embedded broker) and show it live"),
    "broker": ("ccsbus.stack", "run only the embedded MQTT broker"),
    "exi": ("ccsbus_exi.cli", "decode / encode EXI messages (apphand, din, iso2)"),
    "pcap": ("ccsbus_tools.pcap", "decode SLAC, SDP and V2G messages of a pcap/pcapng"),
    "plot": ("ccsbus_tools.plot", "plot a session (pcap or session log) to PNG"),
    "vmodem": ("ccsbus_slac.vmodem", "run the virtual HomePlug GP modem medium (no hardware needed)"),
    "contract": ("ccsbus.render", "print the topic contract as Markdown, mosquitto ACL or JSON"),
    "bench": ("ccsbus_tools.bench", "run the benchmark scripts"),
    "deploy": ("ccsbus_tools.deploy", "write broker passwords, ACL and mosquitto.conf for a deployment"),
    "health": ("ccsbus_tools.health", "exit 0 when a service says online (container health checks)"),
}

USAGE = """usage: ccsbus <command> [args]

commands:
  run <service>   run one service ({services})
{tools}

`ccsbus <command> --help` tells more.
"""


def usage() -> str:
    tools = "\n".join(f"  {name:<15} {text}" for name, (_, text) in TOOLS.items())
    return USAGE.format(services=", ".join(SERVICES), tools=tools)


def _load_main(module: str, attr: str = "main") -> Callable[[list[str]], int]:
    mod = importlib.import_module(module)
    fn: Callable[[list[str]], int] = getattr(mod, attr)
    return fn


def run_service(argv: list[str]) -> int:
    from .lifecycle import main as service_main

    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: ccsbus run <service> [--config FILE] [--role ROLE] [--broker URL]\n"
              f"services: {', '.join(SERVICES)}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SERVICES:
        print(f"ccsbus run: unknown service {name!r}; services are {', '.join(SERVICES)}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(SERVICES[name])
    return service_main(module.SPEC, rest)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "run":
        return run_service(rest)
    if command == "--version":
        from . import __version__

        print(__version__)
        return 0
    if command not in TOOLS:
        print(f"ccsbus: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, _ = TOOLS[command]
    entry = "broker_main" if command == "broker" else "main"
    return _load_main(module, entry)(rest)


if __name__ == "__main__":
    sys.exit(main())
