"""V2GTP header checks and TCP-segment reassembly."""

from __future__ import annotations

import pytest

from ccsbus_v2g import v2gtp
from ccsbus_v2g.v2gtp import V2gtpError, V2gtpErrorReason, V2gtpReader


def test_encode_header_layout() -> None:
    frame = v2gtp.encode(b"\x80\x9a\x00")
    assert frame == bytes.fromhex("01fe8001000000039a00".replace("9a00", "809a00"))
    assert v2gtp.encode(b"\x10\x00", v2gtp.PAYLOAD_SDP_REQ)[:4] == bytes.fromhex("01fe9000")


def test_reader_reassembles_across_segments_and_splits_back_to_back() -> None:
    a, b = b"\x80\x9a" + bytes(range(30)), b"\x80\x98\x02"
    stream = v2gtp.encode(a) + v2gtp.encode(b)
    reader = V2gtpReader()
    got: list[tuple[int, bytes]] = []
    for i in range(len(stream)):  # worst case: one byte per segment
        got += reader.feed(stream[i : i + 1])
    assert got == [(v2gtp.PAYLOAD_EXI, a), (v2gtp.PAYLOAD_EXI, b)]
    assert reader.buffered == 0
    assert V2gtpReader().feed(stream) == got


def test_reader_keeps_partial_message() -> None:
    frame = v2gtp.encode(b"abcdef")
    reader = V2gtpReader()
    assert reader.feed(frame[:10]) == []
    assert reader.feed(frame[10:]) == [(v2gtp.PAYLOAD_EXI, b"abcdef")]


def test_zero_length_payload() -> None:
    assert V2gtpReader().feed(v2gtp.encode(b"")) == [(v2gtp.PAYLOAD_EXI, b"")]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("02fd800100000001", V2gtpErrorReason.BAD_VERSION),
        ("01ff800100000001", V2gtpErrorReason.BAD_INVERSE),
        ("01fe123400000001", V2gtpErrorReason.UNKNOWN_PAYLOAD_TYPE),
        ("01fe800100010001", V2gtpErrorReason.TOO_LONG),
    ],
)
def test_bad_headers_raise_with_reason(header: str, reason: V2gtpErrorReason) -> None:
    reader = V2gtpReader(max_payload=65536)
    with pytest.raises(V2gtpError) as info:
        reader.feed(bytes.fromhex(header) + b"x")
    assert info.value.reason is reason


def test_oversize_limit_is_configurable() -> None:
    with pytest.raises(V2gtpError) as info:
        V2gtpReader(max_payload=16).feed(v2gtp.encode(bytes(17)))
    assert info.value.reason is V2gtpErrorReason.TOO_LONG
    assert V2gtpReader(max_payload=16).feed(v2gtp.encode(bytes(16))) == [(0x8001, bytes(16))]


def test_datagram_must_match_its_length() -> None:
    frame = v2gtp.encode(b"\x10\x00", v2gtp.PAYLOAD_SDP_REQ)
    assert v2gtp.decode_datagram(frame) == (v2gtp.PAYLOAD_SDP_REQ, b"\x10\x00")
    with pytest.raises(V2gtpError) as info:
        v2gtp.decode_datagram(frame[:-1])
    assert info.value.reason is V2gtpErrorReason.TRUNCATED
    with pytest.raises(V2gtpError) as info:
        v2gtp.decode_datagram(frame + b"\x00")
    assert info.value.reason is V2gtpErrorReason.TRAILING
