"""MME codec: every message round-trips, headers are right, bad bytes raise only ParseError."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccsbus_slac import mme
from ccsbus_slac.mme import (
    BROADCAST,
    LOCAL_MODEM,
    AttenCharInd,
    AttenCharRsp,
    AttenProfileInd,
    Frame,
    GetKeyCnf,
    GetKeyReq,
    LinkStatusCnf,
    MnbcSoundInd,
    ParseError,
    SetKeyCnf,
    SetKeyReq,
    SlacMatchCnf,
    SlacMatchReq,
    SlacParmCnf,
    SlacParmReq,
    StartAttenCharInd,
    SwVerCnf,
    SwVerReq,
    ValidateCnf,
    ValidateReq,
    parse_frame,
    vendor_frame,
)

A = bytes.fromhex("021122334455")
B = bytes.fromhex("02aabbccddee")
RUN = bytes(range(8))

SAMPLES = [
    SlacParmReq(run_id=RUN),
    SlacParmCnf(run_id=RUN, forwarding_sta=A, num_sounds=10, time_out=6, resp_type=1),
    StartAttenCharInd(run_id=RUN, forwarding_sta=A, num_sounds=10, time_out=6),
    MnbcSoundInd(run_id=RUN, count=7, sender_id=b"PEV".ljust(17, b"\0"), rnd=bytes(range(16))),
    AttenProfileInd(pev_mac=A, aag=list(range(58))),
    AttenCharInd(source_address=A, run_id=RUN, num_sounds=10, aag=[20 + i % 7 for i in range(58)]),
    AttenCharRsp(source_address=A, run_id=RUN, result=0),
    SlacMatchReq(run_id=RUN, pev_mac=A, evse_mac=B, evse_id=b"DE*ABC".ljust(17, b"\0")),
    SlacMatchCnf(run_id=RUN, pev_mac=A, evse_mac=B, nid=bytes(range(7)), nmk=bytes(range(16, 32))),
    ValidateReq(signal_type=0, timer=5, result=1),
    ValidateCnf(signal_type=0, toggle_num=3, result=2),
    SetKeyReq(nid=bytes(range(7)), new_key=bytes(range(16))),
    SetKeyCnf(result=0, my_nonce=5, your_nonce=6),
    GetKeyReq(nid=bytes(range(7))),
    GetKeyCnf(nid=bytes(range(7)), key=bytes(16)),
]


@pytest.mark.parametrize("body", SAMPLES, ids=lambda b: type(b).name())
def test_round_trip(body: mme.Message) -> None:
    frame = Frame(dst=B, src=A, body=body)
    data = frame.pack()
    assert len(data) >= 60
    assert data[12:14] == b"\x88\xe1" and data[14] == 0x01
    assert struct.unpack("<H", data[15:17])[0] == type(body).MMTYPE
    back = parse_frame(data)
    assert back.body == body and back.dst == B and back.src == A
    assert back.name == type(body).name()


@pytest.mark.parametrize("body", [SwVerReq(), SwVerCnf(version="MAC-QCA7000-1.2.5"), LinkStatusCnf(link_status=1)])
def test_vendor_messages_carry_the_qualcomm_oui_instead_of_fmi(body: mme.Message) -> None:
    data = vendor_frame(LOCAL_MODEM, A, body).pack()
    assert data[14] == 0x00 and data[17:20] == b"\x00\xb0\x52"
    assert parse_frame(data).body == body


def test_payload_layout_of_slac_parm_cnf_matches_iso_15118_3() -> None:
    data = Frame(dst=A, src=B, body=SlacParmCnf(run_id=RUN, forwarding_sta=A)).pack()
    payload = data[19:]
    assert payload[0:6] == BROADCAST  # M-SOUND_TARGET
    assert payload[6:9] == bytes([10, 6, 1])  # NUM_SOUNDS, Time_Out, RESP_TYPE
    assert payload[9:15] == A and payload[15:17] == b"\0\0" and payload[17:25] == RUN


def test_match_cnf_mvf_length_and_key_positions() -> None:
    body = SlacMatchCnf(run_id=RUN, pev_mac=A, evse_mac=B, nid=b"N" * 7, nmk=b"K" * 16)
    payload = Frame(dst=A, src=B, body=body).pack()[19:]
    assert payload[2:4] == b"\x56\x00"
    assert payload[66:73] == b"N" * 7 and payload[74:90] == b"K" * 16


@pytest.mark.parametrize("data,words", [
    (b"", "too short"),
    (b"\xff" * 13, "too short"),
    (b"\xff" * 12 + b"\x86\xdd" + bytes(50), "ethertype"),
    (b"\xff" * 12 + b"\x88\xe1\x01\x64", "too short"),
    (b"\xff" * 12 + b"\x88\xe1\x02\x64\x60\x00\x00" + bytes(40), "MMV"),
    (b"\xff" * 12 + b"\x88\xe1\x01\x7d\x60\x00\x00" + bytes(20), "too short for"),
])
def test_bad_frames_raise_parse_error_naming_the_problem(data: bytes, words: str) -> None:
    with pytest.raises(ParseError, match=words):
        parse_frame(data)


def test_fmi_fields() -> None:
    plain = Frame(dst=BROADCAST, src=A, body=SlacParmReq(run_id=RUN)).pack()
    frame = parse_frame(plain[:17] + bytes([0x21, 0x07]) + plain[19:])
    assert (frame.fragment_count, frame.fragment_number, frame.fragment_sequence) == (3, 1, 7)
    assert parse_frame(plain).fragment_count == 1


def test_unknown_mmtype_is_kept_raw() -> None:
    data = b"\xff" * 12 + b"\x88\xe1\x01\x10\x60\x00\x00" + b"xyz" + bytes(40)
    frame = parse_frame(data)
    assert not frame.known and frame.name == "MMTYPE_6010.REQ" and frame.body.pack().startswith(b"xyz")


def test_vlan_tagged_frames_parse() -> None:
    plain = Frame(dst=BROADCAST, src=A, body=SlacParmReq(run_id=RUN)).pack()
    tagged = plain[:12] + b"\x81\x00\x00\x01" + plain[12:]
    assert parse_frame(tagged).body == SlacParmReq(run_id=RUN)


VALID = [Frame(dst=B, src=A, body=b).pack() for b in SAMPLES]


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_parser_never_raises_anything_but_parse_error_on_random_bytes(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_frame(data)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID), st.integers(min_value=12, max_value=130), st.binary(min_size=1, max_size=8),
       st.booleans())
def test_parser_never_raises_anything_but_parse_error_on_mutated_frames(base: bytes, pos: int, junk: bytes,
                                                                         truncate: bool) -> None:
    data = base[:pos] if truncate else base[:pos] + junk + base[pos + len(junk):]
    try:
        frame = parse_frame(data)
    except ParseError:
        return
    frame.pack() if frame.known else None  # a parsed frame can be re-encoded or raises ParseError
