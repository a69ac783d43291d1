"""Speed of the EXI codec: C core (built here with the Makefile) and the Python binding.

Run: .venv/bin/python services/exi-codec/bench/bench_codec.py [--seconds 1.0]
Messages: CurrentDemandReq/Res and ChargeParameterDiscoveryReq/Res, DIN and ISO-2, taken from
real sessions. Figures are messages per CPU-second (one core), best of several short runs.
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import ccsbus_exi

CODEC = Path(__file__).resolve().parents[1]
MESSAGES = [
    ("din", "CurrentDemandReq", "809a0223e95ff78afebf9e10d1400780c0c00404050320000c203e804080e180"
     "7c00018103200c0814010140b800"),
    ("din", "CurrentDemandRes", "809a0223e95ff78afebf9e10e000408000010287c118001874038000040a1209"
     "c020308827020384c3a800"),
    ("din", "ChargeParameterDiscoveryReq", "809a02004080c1014181c210719040134080c29874460a1ac06"
     "02048551e808121e81a0c814000"),
    ("din", "ChargeParameterDiscoveryRes", "809a0101bbc01c5080e001ec00200004051828758405500080"
     "000101844138101c2432c04081436c900c0c000041435ecc044606000200"),
    ("iso2", "CurrentDemandReq", "809802275de64d834b5d1f10d1000a800600001081f046008614138020414"
     "282700400040837ce00810640d01081f04600"),
    ("iso2", "CurrentDemandRes", "809802275de64d834b5d1f10e00000002040840861d000c0000000210241"
     "38041844138105098750095a5a30303030300008"),
    ("iso2", "ChargeParameterDiscoveryReq", "809802022669991e4a686c109442418200c80840a01f000c2"
     "03e804003000000"),
    ("iso2", "ChargeParameterDiscoveryRes", "809802022669991e4a686c10a000000000002028c14105098"
     "750a80000002206c59808006190ca00"),
]


def rate(fn: Callable[[], object], seconds: float, trials: int = 5) -> float:
    """Calls per CPU-second, best of `trials` runs (the machine is shared)."""
    best = 0.0
    for _ in range(trials):
        n = 0
        t0 = time.process_time()
        while True:
            for _ in range(1000):
                fn()
            n += 1000
            dt = time.process_time() - t0
            if dt >= seconds / trials:
                break
        best = max(best, n / dt)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["make", "-s", "-C", str(CODEC), f"OUT={tmp}", f"{tmp}/exi_bench"],
                       check=True)
        lines = "".join(f"{s} {m} {h}\n" for s, m, h in MESSAGES)
        print("C core (one core, in process):")
        sys.stdout.flush()
        subprocess.run([f"{tmp}/exi_bench", str(args.seconds)], input=lines, text=True,
                       check=True)
    print("\nPython binding ccsbus_exi (one core, in process):")
    print(f"{'schema':6} {'message':30} {'decode/s':>14} {'encode/s':>14}")
    for schema, name, hexstr in MESSAGES:
        data = bytes.fromhex(hexstr)
        tree = ccsbus_exi.decode(schema, data)
        assert ccsbus_exi.encode(schema, tree) == data
        dec = rate(functools.partial(ccsbus_exi.decode, schema, data), args.seconds)
        enc = rate(functools.partial(ccsbus_exi.encode, schema, tree), args.seconds)
        print(f"{schema:6} {name:30} {dec:14.0f} {enc:14.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
