"""Interop: our SECC (v2g + exi services over mosquitto) against the iso15118 EVCC over a veth pair.

Each side lives in its own network namespace, so SDP goes by multicast to ff02::1 and TCP to the
SECC's link-local address with its scope, as on a PLC link. The iso15118 EVCC runs from its own
venv (<repo>/.venv-peer, created on first use) with its Java EXI codec.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
REPO = Path(__file__).resolve().parents[3]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"ccsbus_v2g_bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


peer = _load("peer")

RECORDER = """
import sys, paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
out = open(sys.argv[2], "a", buffering=1)
c = mqtt.Client(CallbackAPIVersion.VERSION2)
c.on_connect = lambda *a: c.subscribe("#")
c.on_message = lambda cl, u, m: out.write(m.topic + " " + m.payload.decode("utf-8", "replace") + "\\n")
while True:
    try:
        c.connect("127.0.0.1", int(sys.argv[1])); break
    except OSError:
        import time; time.sleep(0.05)
c.loop_forever()
"""

EVCC_CONFIGS = {
    "DIN_SPEC_70121": {"supportedProtocols": ["DIN_SPEC_70121"], "energyTransferMode": "DC_extended",
                       "isCertInstallNeeded": False, "useTls": False, "chargeLoopCycle": 10},
    "ISO_15118_2": {"supportedProtocols": ["ISO_15118_2"], "supportedEnergyServices": ["DC"],
                    "energyTransferMode": "DC_extended", "isCertInstallNeeded": False,
                    "useTls": False, "chargeLoopCycle": 10},
}


def _wait_file(path: Path, needle: str, timeout: float, procs: list[subprocess.Popen[bytes]]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize("evcc_protocol", ["DIN_SPEC_70121", "ISO_15118_2"])
def test_our_secc_against_iso15118_evcc(evcc_protocol: str, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces (ip netns)")
    pytest.importorskip("ccsbus_exi", reason="the EXI binding ccsbus_exi is not built")
    try:
        peer_python = peer.ensure_peer_venv()
    except peer.PeerUnavailable as exc:
        pytest.skip(f"iso15118 EVCC unavailable: {exc}")
    pair = peer.VethPair(tag=f"{os.getpid() % 100000}")
    try:
        pair.create()
    except peer.PeerUnavailable as exc:
        pytest.skip(str(exc))
    procs: list[subprocess.Popen[bytes]] = []
    logs = {name: tmp_path / f"{name}.log" for name in ("mosquitto", "exi", "v2g", "evcc", "mqtt")}
    try:
        port = 18830
        (tmp_path / "mosquitto.conf").write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        config = tmp_path / "ccsbus.yaml"
        config.write_text(
            "role: EVSE\n"
            f"broker: {{url: 'mqtt://127.0.0.1:{port}', base_topic: interop}}\n"
            f"v2g: {{interface: {pair.evse_if}, wait_for_link: false, standalone: true, "
            "codec: mqtt}\n")
        evse = pair.exec_args(pair.evse_ns)
        py = str(REPO / ".venv" / "bin" / "python")

        def spawn(name: str, args: list[str], ns: list[str], cwd: Path | None = None,
                  env: dict[str, str] | None = None) -> None:
            log = open(logs[name], "wb")  # noqa: SIM115 - closed with the process
            procs.append(subprocess.Popen([*ns, *args], stdout=log, stderr=subprocess.STDOUT,
                                          cwd=cwd, env={**os.environ, **(env or {})}))

        spawn("mosquitto", ["mosquitto", "-c", str(tmp_path / "mosquitto.conf")], evse)
        time.sleep(0.3)
        spawn("mqtt", [py, "-c", RECORDER, str(port), str(logs["mqtt"]) + ".rec"], evse)
        spawn("exi", [py, "-m", "ccsbus", "run", "exi", "-c", str(config)], evse)
        spawn("v2g", [py, "-m", "ccsbus", "run", "v2g", "-c", str(config)], evse)
        assert _wait_file(logs["v2g"], "SECC listening", 20, procs), logs["v2g"].read_text()

        evcc_dir = tmp_path / "evcc"
        evcc_dir.mkdir()
        evcc_config = evcc_dir / "evcc_config.json"
        evcc_config.write_text(json.dumps(EVCC_CONFIGS[evcc_protocol]))
        spawn("evcc", [str(peer_python), "-m", "iso15118.evcc.main", str(evcc_config)],
              pair.exec_args(pair.pev_ns), cwd=evcc_dir,
              env={"NETWORK_INTERFACE": pair.pev_if, "LOG_LEVEL": "INFO",
                   "PKI_PATH": str(evcc_dir), "MESSAGE_LOG_JSON": "false"})
        finished = _wait_file(logs["v2g"], "car session over", 120, procs)
        v2g_log = logs["v2g"].read_text(errors="replace")
        evcc_log = logs["evcc"].read_text(errors="replace")
        assert finished, f"no session end\n--- v2g\n{v2g_log[-3000:]}\n--- evcc\n{evcc_log[-3000:]}"
        over = next(line for line in v2g_log.splitlines() if "car session over" in line)
        assert "clean=true" in over, f"{over}\n--- evcc\n{evcc_log[-3000:]}"
        proto = "din" if evcc_protocol == "DIN_SPEC_70121" else "iso2"
        assert f"protocol negotiated protocol={proto}" in v2g_log
        record = Path(str(logs["mqtt"]) + ".rec")
        assert _wait_file(record, "interop/fsm_state SessionStopped", 5, procs)
        assert '"name":"CurrentDemandRes"' in record.read_text(errors="replace").replace(" ", "")
        assert _wait_file(logs["evcc"], "SessionStopRes received", 15, procs), (
            logs["evcc"].read_text(errors="replace")[-3000:])
        assert "Failed" not in logs["evcc"].read_text(errors="replace")
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        pair.delete()
