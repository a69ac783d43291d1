"""NID derivation from the NMK (HomePlug AV / ISO 15118-3)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from ccsbus.pcapio import read_frames
from ccsbus.testing.fixtures import shared_dir
from ccsbus_slac.mme import ParseError, SlacMatchCnf, parse_frame
from ccsbus_slac.nid import nid_from_nmk

# captures of real chargers whose CM_SLAC_MATCH.CNF carries an NID derived by the standard
REAL_CHARGERS = [
    "pyplc/2022-11-25_v0.2_ABB_until_ChargeParamDiscovery.pcapng",
    "pyplc/2022-12-13_compleo_with_bulb.pcapng",
    "pyplc/2022-12-20_alpi_currentDemandSequenceErrorShutdown.pcapng",
    "pyplc/2023-03-02_SuperCharger_CableCheck_error.pcapng",
]


def match_cnfs(path: Path) -> list[SlacMatchCnf]:
    out = []
    for f in read_frames(path):
        try:
            frame = parse_frame(f.data)
        except ParseError:
            continue
        if isinstance(frame.body, SlacMatchCnf):
            out.append(frame.body)
    return out


@pytest.mark.parametrize("name", REAL_CHARGERS)
def test_nid_matches_real_chargers(name: str) -> None:
    path = shared_dir("captures") / name
    cnfs = match_cnfs(path)
    assert cnfs, f"no CM_SLAC_MATCH.CNF in {name}"
    for cnf in cnfs:
        assert nid_from_nmk(cnf.nmk) == cnf.nid


def test_structure_of_the_nid() -> None:
    nmk = bytes(range(16))
    digest = nmk
    for _ in range(5):
        digest = hashlib.sha256(digest).digest()
    nid = nid_from_nmk(nmk)
    assert nid[:6] == digest[:6]
    assert nid[6] & 0x0F == digest[6] >> 4  # the 52nd bit ends in the low nibble
    assert nid[6] >> 4 == 0  # security level 0, two MSBs zero
    assert nid_from_nmk(nmk, security_level=1)[6] >> 4 == 1


def test_nid_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        nid_from_nmk(b"short")
    with pytest.raises(ValueError, match="security level"):
        nid_from_nmk(bytes(16), security_level=4)


def test_nid_agrees_with_pyslac() -> None:
    utils = pytest.importorskip("pyslac.utils", reason="pyslac (dev extra) is not installed")
    for _ in range(50):
        nmk = os.urandom(16)
        assert utils.generate_nid(nmk) == nid_from_nmk(nmk)
