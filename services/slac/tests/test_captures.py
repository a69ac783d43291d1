"""Real captures: every HomePlug frame parses into a named message with its fields.

The expected counts per message were cross-checked against Wireshark's HomePlug AV dissector.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from ccsbus.pcapio import read_frames
from ccsbus.testing.fixtures import shared_dir
from ccsbus_slac.mme import (
    AttenCharInd,
    Frame,
    MnbcSoundInd,
    ParseError,
    SetKeyReq,
    SlacMatchCnf,
    SlacMatchReq,
    SlacParmReq,
    StartAttenCharInd,
    fields_of,
    parse_frame,
)

EXPECTED = {
    "pyplc/2023-05-03_TaycanLeftside_slacFail.pcapng": {
        "CM_SET_KEY.REQ": 1, "CM_SET_KEY.CNF": 1, "CM_SLAC_PARM.REQ": 6, "CM_SLAC_PARM.CNF": 6},
    "dsv2gshark/ISO-2_DC_multi_EVSE_SLAC_DS5366_Josev.pcapng": {
        "CM_SLAC_PARM.REQ": 2, "CM_SLAC_PARM.CNF": 2, "CM_START_ATTEN_CHAR.IND": 6, "CM_MNBC_SOUND.IND": 20,
        "CM_ATTEN_PROFILE.IND": 20, "CM_ATTEN_CHAR.IND": 2, "CM_ATTEN_CHAR.RSP": 4, "CM_SLAC_MATCH.REQ": 2,
        "CM_SLAC_MATCH.CNF": 1, "CM_BRG_INFO.CNF": 1,
        # vendor/manufacturer-specific frames of other chip makers, kept raw under their MMTYPE
        "MMTYPE_8000.IND": 30, "MMTYPE_A22C.IND": 3, "MMTYPE_0014.REQ": 5, "MMTYPE_0014.CNF": 5},
    "pyplc/2025-01-21_listenMode_02_mac_spoofing_some_frames_visible.pcapng": {
        "CM_ENCRYPTED_PAYLOAD.RSP": 4, "CM_SLAC_PARM.CNF": 1, "CM_ATTEN_CHAR.IND": 1, "CM_SLAC_MATCH.CNF": 1,
        "CM_SET_KEY.REQ": 1, "CM_SET_KEY.CNF": 1},
}


def homeplug(path: Path) -> list[Frame]:
    frames = []
    for raw in read_frames(path):
        data = raw.data
        ethertype = data[16:18] if data[12:14] == b"\x81\x00" else data[12:14]
        if ethertype != b"\x88\xe1":
            continue
        frames.append(parse_frame(data))  # a ParseError here fails the test: every HomePlug frame must parse
    return frames


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counts_per_mmtype(name: str) -> None:
    frames = homeplug(shared_dir("captures") / name)
    assert dict(Counter(f.name for f in frames)) == EXPECTED[name]


def test_multi_evse_session_fields() -> None:
    frames = homeplug(shared_dir("captures") / "dsv2gshark/ISO-2_DC_multi_EVSE_SLAC_DS5366_Josev.pcapng")
    run_ids = {f.body.run_id for f in frames if isinstance(f.body, SlacParmReq)}
    assert len(run_ids) == 1
    run_id = run_ids.pop()
    for f in frames:
        if isinstance(f.body, StartAttenCharInd | MnbcSoundInd | AttenCharInd | SlacMatchReq | SlacMatchCnf):
            assert f.body.run_id == run_id, f.name
    sounds = [f.body for f in frames if isinstance(f.body, MnbcSoundInd)]
    assert sorted({s.count for s in sounds}) == list(range(10))
    chars = [f for f in frames if isinstance(f.body, AttenCharInd)]
    assert len({f.src for f in chars}) == 2  # two chargers answered on the shared cable
    assert all(len(f.body.aag) == 58 and f.body.num_sounds == 10 for f in chars if isinstance(f.body, AttenCharInd))
    match_req = next(f.body for f in frames if isinstance(f.body, SlacMatchReq))
    cnf = next(f for f in frames if isinstance(f.body, SlacMatchCnf))
    assert isinstance(cnf.body, SlacMatchCnf)
    assert cnf.src == match_req.evse_mac and len(cnf.body.nmk) == 16 and len(cnf.body.nid) == 7
    named = fields_of(cnf.body)
    assert {"run_id", "pev_mac", "evse_mac", "nid", "nmk", "pev_id", "evse_id"} <= set(named)


def test_listen_mode_capture_joins_with_the_observed_key() -> None:
    frames = homeplug(shared_dir("captures") / "pyplc/2025-01-21_listenMode_02_mac_spoofing_some_frames_visible.pcapng")
    cnf = next(f.body for f in frames if isinstance(f.body, SlacMatchCnf))
    set_key = next(f.body for f in frames if isinstance(f.body, SetKeyReq))
    assert isinstance(cnf, SlacMatchCnf) and isinstance(set_key, SetKeyReq)
    assert set_key.new_key == cnf.nmk and set_key.nid == cnf.nid


def test_every_homeplug_frame_of_every_capture_parses() -> None:
    root = shared_dir("captures")
    total = 0
    for path in sorted(root.rglob("*.pcap*")):
        try:
            total += len(homeplug(path))
        except ParseError as exc:
            pytest.fail(f"{path.name}: {exc}")
    assert total > 1000
