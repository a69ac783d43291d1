"""`ccsbus sim`: the whole DC session, one command, on mosquitto and on the embedded broker.

The pure parts (stack plans, fault selection, the phase recorder) are tested without processes; the
session tests run the real command: eight service processes, the virtual modem, a broker.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ccsbus.pcapio import homeplug_frames, read_frames, sdp_datagrams, v2gtp_messages
from ccsbus_tools.session import PHASE_ORDER, Phase, SessionRecorder, message_base
from ccsbus_tools.sim import (
    EVSE_BASE,
    PEV_BASE,
    Ports,
    Side,
    SimOptions,
    fault_value,
    parse_args,
    plan_stacks,
)

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ pure parts
def test_plan_joins_the_two_stacks_through_the_cable_and_the_modem() -> None:
    ports = Ports(evse_tap=101, pev_tap=102, evse_modem=201, pev_modem=202, sdp=40001)
    plans = plan_stacks(SimOptions(protocol="iso2", target_soc=70, speed=10), "mqtt://127.0.0.1:9", ports)
    evse, pev = plans
    assert (evse.side, evse.base, pev.side, pev.base) == (Side.EVSE, EVSE_BASE, Side.PEV, PEV_BASE)
    assert evse.env["CCSBUS__HW__CABLE_PEER_BASE"] == PEV_BASE
    assert pev.env["CCSBUS__HW__CABLE_PEER_BASE"] == EVSE_BASE
    assert (evse.env["CCSBUS__SLAC__UDP_PORT"], pev.env["CCSBUS__SLAC__UDP_PORT"]) == ("101", "102")
    assert pev.env["CCSBUS__V2G__EVCC__PROTOCOLS"] == "[iso2]"
    assert pev.env["CCSBUS__V2G__EVCC__STOP_SOC"] == "70"
    assert evse.env["CCSBUS__ROLE"] == "EVSE" and pev.env["CCSBUS__ROLE"] == "PEV"
    assert all(p.env["CCSBUS__BROKER__URL"] == "mqtt://127.0.0.1:9" for p in plans)
    assert "CCSBUS__V2G__FAULT" not in evse.env
    # SDP on this run's own port, so simulations side by side on one machine never meet
    assert evse.env["CCSBUS__V2G__SDP_PORT"] == pev.env["CCSBUS__V2G__EVCC__SDP_PORT"] == "40001"


def test_plan_for_one_role_uses_the_real_interface() -> None:
    opts = SimOptions(role_only=Side.PEV, interface="eth1")
    (plan,) = plan_stacks(opts, "mqtt://h:1", None)
    assert plan.side is Side.PEV
    assert plan.env["CCSBUS__SLAC__LINK"] == "pcap" and plan.env["CCSBUS__SLAC__INTERFACE"] == "eth1"
    assert "CCSBUS__HW__CABLE_PEER_BASE" not in plan.env


def test_faults_go_to_the_right_service() -> None:
    assert fault_value("7") == ("v2g", "7")
    assert fault_value("pre_charge_failed") == ("v2g", "pre_charge_failed")
    assert fault_value("isolation") == ("hw", "isolation")
    with pytest.raises(ValueError, match="cases are"):
        fault_value("99")
    evse, _ = plan_stacks(SimOptions(fault="2"), "mqtt://h:1", Ports(1, 2, 3, 4))
    assert evse.env["CCSBUS__V2G__FAULT"] == "2"


def test_bad_options_exit_with_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--role-only", "pev"], ["--target-soc", "120"], ["--speed", "0"],
                 ["--protocol", "iso20"], ["--fault", "bad fault!"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(argv)
        assert exc.value.code == 2, argv


def _feed_session(rec: SessionRecorder) -> None:
    t = 0.0

    def feed(side: str, path: str, value: Any) -> None:
        nonlocal t
        t += 0.1
        rec.feed(side, path, value, t)

    feed("EVSE", "cp/state", {"state": "B", "duty": 5, "time": 0})
    feed("EVSE", "slac/state", {"role": "EVSE", "state": "matching", "time": 0})
    feed("PEV", "slac/link", {"link": "up", "time": 0})
    for name in ("supportedAppProtocolReq", "SessionSetupReq", "CableCheckReq", "PreChargeReq",
                 "PowerDeliveryReq", "CurrentDemandReq", "CurrentDemandReq", "PowerDeliveryReq",
                 "WeldingDetectionReq", "SessionStopReq"):
        feed("PEV", "v2g/message", {"direction": "tx", "name": name, "time": 0, "protocol": "din"})
        feed("PEV", "v2g/message", {"direction": "rx", "name": name[:-3] + "Res", "time": 0,
                                    "protocol": "din", "latency_ms": 5.0})
    feed("PEV", "soc", 81)
    feed("EVSE", "cp/state", {"state": "A", "time": 0})


def test_recorder_finds_every_phase_in_order() -> None:
    rec = SessionRecorder(sample_interval=0.0)
    _feed_session(rec)
    assert rec.seen() == [p.value for p in PHASE_ORDER]
    assert rec.missing() == [] and rec.in_order()
    assert rec.protocol == "din"
    assert rec.latencies()["PEV CurrentDemandRes"]["count"] == 2
    assert rec.soc == 81
    log = rec.to_json()
    assert [p["phase"] for p in log["phases"]] == [p.value for p in PHASE_ORDER]
    assert log["samples"][-1]["soc"] == 81


def test_recorder_does_not_go_back_and_reports_what_is_missing() -> None:
    rec = SessionRecorder()
    rec.feed("EVSE", "cp/state", {"state": "B", "time": 0}, 0.0)
    rec.feed("PEV", "v2g/message", {"direction": "tx", "name": "CableCheckReq", "time": 0}, 1.0)
    rec.feed("PEV", "v2g/message", {"direction": "tx", "name": "SessionSetupReq", "time": 0}, 2.0)
    assert rec.phase is Phase.CABLE_CHECK
    assert "slac" in rec.missing() and "charging" in rec.missing()
    assert message_base("din:CurrentDemandRes") == "currentdemand"


# ------------------------------------------------------------------ whole sessions
def _run_sim(out: Path, *args: str, timeout: float = 150) -> tuple[int, dict[str, Any], str]:
    cmd = [sys.executable, "-m", "ccsbus", "sim", "--out", str(out), "--plain",
           "--start-soc", "60", "--target-soc", "70", "--speed", "400", "--timeout", "100", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    log_path = out / "session.json"
    assert log_path.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.returncode, json.loads(log_path.read_text()), proc.stdout + proc.stderr


def _check_session(out: Path, code: int, log: dict[str, Any], output: str, protocol: str) -> None:
    assert code == 0, f"{log['reason']}\n{output[-3000:]}"
    assert log["result"] == "ok"
    assert [p["phase"] for p in log["phases"]] == [p.value for p in PHASE_ORDER]
    starts = [p["start"] for p in log["phases"]]
    assert starts == sorted(starts)
    assert log["protocol"] == protocol
    assert log["samples"][-1]["soc"] >= 69
    names = {m["name"] for m in log["messages"]}
    assert {"CableCheckReq", "PreChargeReq", "CurrentDemandReq", "WeldingDetectionReq"} <= names
    assert any(m["latency_ms"] for m in log["messages"] if m["name"] == "CurrentDemandRes")
    assert all(c == 0 for c in log["exit_codes"].values()), log["exit_codes"]
    # the capture holds the SLAC exchange and the whole V2G conversation
    frames = list(read_frames(out / "session.pcap"))
    assert len(list(homeplug_frames(frames))) >= 10
    assert len(list(sdp_datagrams(frames))) == 2  # request and response
    v2g = list(v2gtp_messages(frames))
    assert len(v2g) == sum(1 for m in log["messages"] if m["side"] == "PEV")
    assert not log["pcap"]["encode_failures"]


@pytest.mark.parametrize("protocol", ["din", "iso2"])
def test_session_on_the_embedded_broker(tmp_path: Path, protocol: str) -> None:
    code, log, output = _run_sim(tmp_path / "run", "--protocol", protocol)
    _check_session(tmp_path / "run", code, log, output, protocol)
    assert log["options"]["broker"] == "embedded"


@pytest.mark.parametrize("protocol", ["din", "iso2"])
def test_session_on_mosquitto(tmp_path: Path, protocol: str, mosquitto: Any) -> None:
    code, log, output = _run_sim(tmp_path / "run", "--protocol", protocol, "--broker", mosquitto.url)
    _check_session(tmp_path / "run", code, log, output, protocol)
    assert log["options"]["broker"] == mosquitto.url


def test_session_on_a_private_mosquitto(tmp_path: Path) -> None:
    code, log, output = _run_sim(tmp_path / "run", "--broker", "mosquitto")
    if "mosquitto binary is not installed" in log["reason"]:
        pytest.skip("mosquitto is not installed")
    _check_session(tmp_path / "run", code, log, output, "din")
    assert log["exit_codes"]["mosquitto"] == 0  # the simulation stops the broker it started


@pytest.mark.parametrize(("fault", "last_phase", "never"), [
    ("pre_charge_failed", "pre-charge", "charging"),   # v2g fault case 7 in the charger
    ("isolation", "cable-check", "pre-charge"),        # the charger's simulated isolation monitor
])
def test_charger_fault_ends_in_a_failed_session_with_safe_shutdown(
        tmp_path: Path, fault: str, last_phase: str, never: str) -> None:
    code, log, output = _run_sim(tmp_path / "run", "--fault", fault)
    assert code == 1, output[-2000:]
    assert log["result"] == "failed" and f"fault {fault}" in log["reason"]
    seen = [p["phase"] for p in log["phases"]]
    assert last_phase in seen and never not in seen
    assert log["final_values"]["PEV.hw.contactors"] == "open"
    assert log["final_values"]["PEV.hw.lock"] == "unlocked"
    assert all(c == 0 for c in log["exit_codes"].values()), log["exit_codes"]
