"""`ccsbus pcap decode`: every message of the field captures decodes; our own capture reads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccsbus.pcapio import PcapWriter
from ccsbus.testing.fixtures import shared_dir
from ccsbus_tools import pcap
from ccsbus_tools.simpcap import PlcCapture

# (SLAC, SDP, V2G) messages per capture; they agree with tshark on the same files: HomePlug AV
# frames, UDP 15118 datagrams, and IPv6 TCP segments with data less the ones tshark flags as
# retransmissions (each V2G message of these captures travels in one segment)
EXPECTED = {
    "dsv2gshark/DIN_DC_DS5366_Josev.pcapng": (115, 2, 200),
    "dsv2gshark/ISO-2_DC_DS5366.pcapng": (128, 2, 974),
    "dsv2gshark/ISO-2_DC_multi_EVSE_SLAC_DS5366_Josev.pcapng": (103, 2, 178),
    "pyplc/2022-10-26_WP4_networkEstablishedButHiddenCommunication.pcapng": (26, 0, 0),
    "pyplc/2022-11-25_v0.2_ABB_until_ChargeParamDiscovery.pcapng": (214, 2, 9),
    "pyplc/2022-12-13_compleo_with_bulb.pcapng": (83, 3, 98),
    "pyplc/2022-12-20_alpi_currentDemandSequenceErrorShutdown.pcapng": (1466, 3, 135),
    "pyplc/2023-03-02_SuperCharger_CableCheck_error.pcapng": (338, 3, 212),
    "pyplc/2023-05-03_TaycanLeftside_slacFail.pcapng": (14, 0, 0),
    "pyplc/2023-05-24_pyPlc_with_Ioniq93prcSoc.pcapng": (43, 2, 138),
    "pyplc/2024-04-20_ModelY_pyPLC_stop_in_precharge.pcapng": (86, 2, 274),
    "pyplc/2024-06-11_Griffigroen_polestar2_stop_in_precharge.pcapng": (56, 2, 52),
    "pyplc/2025-01-21_listenMode_02_mac_spoofing_some_frames_visible.pcapng": (9, 0, 1),
}


def _codec_or_skip() -> None:
    try:
        import ccsbus_exi  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the EXI codec binding is not importable ({exc})")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_v2g_message_of_the_field_captures_decodes(name: str) -> None:
    _codec_or_skip()
    path = shared_dir("captures") / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    listing = pcap.decode_capture(path)
    bad = [e for e in listing.entries if e.error]
    assert not bad, bad[:3]
    counts = listing.counts()
    assert (counts.get("SLAC", 0), counts.get("SDP", 0), counts.get("V2G", 0)) == EXPECTED[name]


def test_capture_statistics_of_a_whole_din_session() -> None:
    _codec_or_skip()
    path = shared_dir("captures") / "dsv2gshark" / "ISO-2_DC_DS5366.pcapng"
    stats = pcap.statistics(pcap.decode_capture(path))
    assert stats["protocols"] == ["iso2"]
    assert stats["cable_check_s"] == pytest.approx(9.495, abs=0.01)
    assert stats["pre_charge_s"] == pytest.approx(2.551, abs=0.01)
    cd = stats["response_ms"]["CurrentDemandRes"]
    assert cd["count"] > 100 and 0 < cd["p50"] <= cd["p90"] <= cd["p99"] <= cd["max"]
    assert stats["sides"]["evse"]["vendor"].startswith("dSPACE")


def test_cli_json_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    _codec_or_skip()
    path = shared_dir("captures") / "pyplc" / "2023-05-24_pyPlc_with_Ioniq93prcSoc.pcapng"
    assert pcap.main(["decode", str(path), "--json", "--stats"]) == 0
    doc = json.loads(capsys.readouterr().out)
    names = [m["name"] for m in doc["messages"]]
    assert "supportedAppProtocolReq" in names and "CurrentDemandReq" in names
    assert "CM_SLAC_PARM.REQ" in names and "SDP request" in names
    assert doc["stats"]["protocols"] == ["din"]
    times = [m["time"] for m in doc["messages"]]
    assert times == sorted(times)
    assert pcap.main(["decode", str(path), "--only", "SDP"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert len(text) == 2 and all(" SDP " in line for line in text)


def test_undecodable_v2g_is_reported_and_sets_the_exit_code(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    _codec_or_skip()
    cap = PlcCapture()
    cap.v2g_message({"direction": "tx", "protocol": "apphand", "time": 1.0, "tree": {
        "supportedAppProtocolReq": {"AppProtocol": [{"ProtocolNamespace": "urn:din:70121:2012:MsgDef",
                                                     "VersionNumberMajor": 2, "VersionNumberMinor": 0,
                                                     "SchemaID": 1, "Priority": 1}]}}})
    good = tmp_path / "good.pcap"
    assert cap.write(good) == 5  # handshake, the request, FIN
    assert pcap.main(["decode", str(good)]) == 0
    assert "supportedAppProtocolReq" in capsys.readouterr().out
    # the same connection with garbage instead of EXI
    from ccsbus.pcapio import read_frames

    frames = list(read_frames(good))
    data = bytearray(frames[3].data)
    data[-6:] = b"\xff" * 6
    bad = tmp_path / "bad.pcap"
    with PcapWriter(bad) as writer:
        for i, f in enumerate(frames):
            writer.write(bytes(data) if i == 3 else f.data, f.time)
    assert pcap.main(["decode", str(bad)]) == 1
    assert "UNDECODABLE" in capsys.readouterr().out


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pcap.main(["decode", str(tmp_path / "nope.pcap")]) == 2
    assert "nope.pcap" in capsys.readouterr().err


def test_vendor_table() -> None:
    assert pcap.vendor_of("00:B0:52:00:00:01").startswith("Qualcomm Atheros")
    assert pcap.vendor_of("02:00:00:00:00:01") == "locally administered (no vendor)"
    assert pcap.vendor_of("") == "unknown"
