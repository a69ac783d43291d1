"""A minimal service for testing the common library's lifecycle: it keeps retained state and counts commands.

It plays the v2g service id (so the contract gives it `v2g/session`, `fsm_state` and `v2g/cmd`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from ccsbus.config import setting
from ccsbus.lifecycle import ServiceContext, ServiceSpec, main


@dataclass(frozen=True)
class ProbeSettings:
    label: str = setting("probe", help="text published in fsm_state")


async def run(ctx: ServiceContext[ProbeSettings]) -> None:
    received: list[str] = []

    def on_cmd(_path: str, value: dict[str, object]) -> None:
        received.append(str(value.get("value")))
        ctx.bus.publish("v2g/session", {"role": ctx.role, "state": f"got {len(received)}", "time": 0,
                                        "last_error": ",".join(received)})

    ctx.bus.subscribe("v2g/cmd", on_cmd)
    ctx.bus.publish("fsm_state", ctx.settings.label)
    await ctx.stopping.wait()


SPEC = ServiceSpec(name="v2g", settings=ProbeSettings, run=run, description="test probe")

if __name__ == "__main__":
    sys.exit(main(SPEC, sys.argv[1:]))
