"""The charger-side fault cases injected into our SECC, against our EVCC, through every service.

Cases 1..16 are fault-cases.md (pyPLC's list); 17..20 break the transport: TCP reset mid-loop,
SessionID change, malformed EXI, bad V2GTP header. Each case runs both stacks as processes on a
real mosquitto with the SECC's fault switch (`v2g.fault`) set, and checks from the recorded topics:
the expected end (safe shutdown or a normal finish), the reason the car names, how far the session
got before the fault, and the safe-shutdown order (cpstate B → current below the threshold →
relay off → unlock). A PASS/FAIL table goes to `$CCSBUS_REPORT_DIR/fault-report.md` (default
`<repo>/out/`, which git ignores); its path is printed at the end of the run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ccsbus_exi", reason="the EXI binding ccsbus_exi is not built")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]


def _helpers() -> Any:
    name = "ccsbus_v2g_tests_evcc_helpers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("evcc_helpers.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


H = _helpers()


@dataclass(frozen=True)
class Expect:
    number: int
    title: str
    ok: bool  # True: the session ends normally (SessionStop); False: safe shutdown
    reason: str  # regex the car's last_error must match (ignored when ok)
    counted: str = ""  # response whose received count shows how far the session got
    count: int = 0  # exact number of `counted` responses the car decoded


EXPECT: tuple[Expect, ...] = (
    Expect(1, "SessionSetupRes FAILED_SequenceError", False,
           r"SessionSetupRes ResponseCode FAILED_SequenceError", "SessionSetupRes", 1),
    Expect(2, "CableCheckRes FAILED", False, r"CableCheckRes ResponseCode FAILED",
           "CableCheckRes", 1),
    Expect(3, "ServiceDiscoveryRes FAILED_SequenceError", False,
           r"ServiceDiscoveryRes ResponseCode FAILED_SequenceError", "ServiceDiscoveryRes", 1),
    Expect(4, "ServicePaymentSelectionRes FAILED_SequenceError", False,
           r"(ServicePayment|PaymentService)SelectionRes ResponseCode FAILED_SequenceError"),
    Expect(5, "ContractAuthenticationRes FAILED_SequenceError", False,
           r"(ContractAuthentication|Authorization)Res ResponseCode FAILED_SequenceError"),
    Expect(6, "ChargeParameterDiscoveryRes FAILED_ServiceSelectionInvalid", False,
           r"ChargeParameterDiscoveryRes ResponseCode FAILED_ServiceSelectionInvalid",
           "ChargeParameterDiscoveryRes", 1),
    Expect(7, "PreChargeRes FAILED (after 2)", False, r"PreChargeRes ResponseCode FAILED",
           "PreChargeRes", 3),
    Expect(8, "PowerDeliveryRes FAILED", False, r"PowerDeliveryRes ResponseCode FAILED",
           "PowerDeliveryRes", 1),
    Expect(9, "CurrentDemandRes FAILED (after 10)", False,
           r"CurrentDemandRes ResponseCode FAILED", "CurrentDemandRes", 11),
    Expect(10, "no response during CableCheck", False,
           r"^V2G_EVCC_Msg_Timeout: no CableCheckRes", "CableCheckRes", 0),
    Expect(11, "no response during PreCharge", False,
           r"^V2G_EVCC_Msg_Timeout: no PreChargeRes", "PreChargeRes", 0),
    Expect(12, "PreChargeRes EVSE_Shutdown (after 2)", False,
           r"PreChargeRes EVSEStatusCode EVSE_Shutdown", "PreChargeRes", 3),
    Expect(13, "CurrentDemandRes EVSE_Shutdown (after 20)", False,
           r"CurrentDemandRes EVSEStatusCode EVSE_Shutdown", "CurrentDemandRes", 21),
    Expect(14, "CurrentDemandRes EVSE_Malfunction (after 5)", False,
           r"CurrentDemandRes EVSEStatusCode EVSE_Malfunction", "CurrentDemandRes", 6),
    Expect(15, "no response during CurrentDemand (after 30)", False,
           r"^V2G_EVCC_Msg_Timeout_CurrentDemand: no CurrentDemandRes", "CurrentDemandRes", 30),
    Expect(16, "good case", True, "", "SessionStopRes", 1),
    Expect(17, "TCP reset mid-loop (after 5 CurrentDemandRes)", False,
           r"connection (lost|reset)|closed the connection", "CurrentDemandRes", 5),
    Expect(18, "SessionID change (6th CurrentDemandRes)", False, r"SessionID changed",
           "CurrentDemandRes", 6),
    Expect(19, "malformed EXI (6th CurrentDemandRes)", False, r"^malformed EXI",
           "CurrentDemandRes", 5),
    Expect(20, "bad V2GTP header (6th CurrentDemandRes)", False, r"V2GTP bad protocol version",
           "CurrentDemandRes", 5),
)


@dataclass
class Outcome:
    protocol: str
    case: Expect
    passed: bool
    end: str
    reason: str
    seconds: float
    problems: list[str]


class Report:
    def __init__(self) -> None:
        self.rows: list[Outcome] = []

    def write(self) -> Path | None:
        if not self.rows:
            return None
        folder = Path(os.environ.get("CCSBUS_REPORT_DIR") or REPO / "out")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "fault-report.md"
        rows = sorted(self.rows, key=lambda o: (o.protocol, o.case.number))
        passed = sum(o.passed for o in rows)
        lines = [
            "# Charger-side fault cases against the ccsbus EVCC",
            "",
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {passed} of {len(rows)} PASS. Each case: "
            "our SECC with `v2g.fault: N`, our EVCC, exi and hw sim on both stacks, mosquitto. "
            "Order checked: cpstate B → current below threshold → relay off → unlock.",
            "",
            "| protocol | # | fault | result | car's end | reason | s |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for o in rows:
            verdict = "PASS" if o.passed else "FAIL: " + "; ".join(o.problems)
            reason = o.reason.replace("|", "/")[:90]
            lines.append(f"| {o.protocol} | {o.case.number} | {o.case.title} | {verdict} | "
                         f"{o.end} | {reason} | {o.seconds:.1f} |")
        path.write_text("\n".join(lines) + "\n")
        return path


_REPORT = Report()


@pytest.fixture(scope="module")
def report() -> Iterator[Report]:
    yield _REPORT
    path = _REPORT.write()
    if path is not None:
        print(f"\nfault report: {path}")


def judge(case: Expect, run: Any) -> list[str]:
    problems: list[str] = []
    end = run.end
    want = "Finished" if case.ok else "SafeShutdown"
    if end["state"] != want:
        problems.append(f"ended {end['state']}, expected {want}")
    reason = end.get("last_error") or ""
    if not case.ok and not re.search(case.reason, reason):
        problems.append(f"reason {reason!r} does not match {case.reason!r}")
    order = H.check_shutdown_order(run.pev_events)
    if order:
        problems.append(order)
    if case.counted:
        rx = [json.loads(p) for t, p in run.pev_events if t == "v2g/message"]
        got = sum(1 for m in rx if m["direction"] == "rx" and m["name"] == case.counted)
        if got != case.count:
            problems.append(f"{got} {case.counted} decoded, expected {case.count}")
    return problems


@pytest.mark.parametrize("protocol", ["din", "iso2"])
@pytest.mark.parametrize("case", EXPECT, ids=lambda c: f"case{c.number:02d}")
def test_fault_case(mosquitto: Any, tmp_path: Path, report: Report, protocol: str,
                    case: Expect) -> None:
    # the charging time bounds the good case; the CurrentDemand cases fire before it ends
    run = H.run_stacks(mosquitto.port, tmp_path, protocol, fault=str(case.number),
                       evcc={"max_charge_time": 12.0 if case.counted == "CurrentDemandRes"
                             else 3.0})
    problems = judge(case, run)
    report.rows.append(Outcome(protocol, case, not problems, run.end["state"],
                               run.end.get("last_error") or "", run.seconds, problems))
    assert not problems, problems
