"""Interop: our PEV matches pyslac's EVSE session, with our virtual modem standing in for its modem.

pyslac's EVSE steps are driven one by one (its own `evse_set_key`, `evse_slac_parm`,
`cm_start_atten_charac`, `cm_sounds_loop`, `cm_atten_char`, `cm_slac_match`) on raw Ethernet in a
network namespace; its fixed 10 s sleep after CM_SET_KEY is set to zero for the test.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable

import pytest

from ccsbus_slac.bench import NetnsBench
from ccsbus_slac.mme import mac_text

pytestmark = pytest.mark.root

PYSLAC_EVSE = """
import asyncio, json, logging, sys
logging.disable(logging.CRITICAL)
import pyslac.session as session
from pyslac.environment import Config
session.SLAC_SETTLE_TIME = 0

async def main():
    evse = session.SlacEvseSession("DE*CCS*E0001", "eth1", Config(slac_init_timeout=20))
    await evse.evse_set_key()
    print(json.dumps({"event": "ready", "mac": evse.evse_mac.hex(), "nid": evse.nid.hex()}), flush=True)
    await evse.evse_slac_parm()
    await evse.cm_start_atten_charac()
    await evse.cm_sounds_loop()
    await evse.cm_atten_char()
    await evse.cm_slac_match()
    print(json.dumps({"event": "matched", "nid": evse.nid.hex(), "nmk": evse.nmk.hex(),
                      "pev_mac": evse.pev_mac.hex(), "sounds": evse.num_total_sounds}), flush=True)

asyncio.run(main())
"""


def test_our_pev_matches_pyslac_evse(netns_bench: Callable[[int], NetnsBench]) -> None:
    if importlib.util.find_spec("pyslac") is None:
        pytest.skip("pyslac (dev extra: pyslac==0.8.3 with marshmallow<4) is not installed")
    bench = netns_bench(2)
    bench.start_vmodem(atten=[5, 9])
    evse = bench.spawn(0, [sys.executable, "-c", PYSLAC_EVSE])
    ready = evse.wait_event("ready", 20)
    assert ready["mac"] == bench.hosts[0].mac.hex()
    pev = bench.agent(1, "PEV", start=True)
    up = pev.wait_event("link_up", 20)
    matched = evse.wait_event("matched", 10)
    assert up["peer_mac"] == mac_text(bench.hosts[0].mac)
    assert up["nid"] == matched["nid"] == ready["nid"]
    assert matched["pev_mac"] == bench.hosts[1].mac.hex()
    assert up["attenuation"] == 14
    states = [json.loads(line)["state"] for line in pev.lines if '"state"' in line]
    assert states[-3:] == ["SET_KEY", "JOINING", "MATCHED"]
