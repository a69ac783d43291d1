"""supportedAppProtocol negotiation: the car's priorities among our enabled protocols."""

from __future__ import annotations

import pytest

from ccsbus_v2g import apphand
from ccsbus_v2g.apphand import HandshakeCode, HandshakeError

DIN = "urn:din:70121:2012:MsgDef"
ISO2 = "urn:iso:15118:2:2013:MsgDef"


def offer(*entries: tuple[str, int, int, int, int]) -> dict:
    return {"supportedAppProtocolReq": {"AppProtocol": [
        {"ProtocolNamespace": ns, "VersionNumberMajor": major, "VersionNumberMinor": minor,
         "SchemaID": sid, "Priority": prio} for ns, major, minor, sid, prio in entries]}}


def test_car_priority_wins_among_enabled() -> None:
    req = offer((ISO2, 2, 0, 111, 1), (DIN, 2, 0, 222, 2))
    both = apphand.negotiate(req, ["din", "iso2"])
    assert both.protocol is not None and both.protocol.schema == "iso2"
    assert both.response == {"supportedAppProtocolRes": {
        "ResponseCode": "OK_SuccessfulNegotiation", "SchemaID": 111}}
    din_only = apphand.negotiate(req, ["din"])
    assert din_only.protocol is not None and din_only.protocol.schema == "din"
    assert din_only.schema_id == 222


def test_priority_not_list_order() -> None:
    req = offer((ISO2, 2, 0, 1, 2), (DIN, 2, 0, 2, 1))
    result = apphand.negotiate(req, ["iso2", "din"])
    assert result.protocol is not None and result.protocol.schema == "din"


def test_minor_deviation_and_major_mismatch() -> None:
    minor = apphand.negotiate(offer((DIN, 2, 1, 5, 1)), ["din"])
    assert minor.code is HandshakeCode.OK_MINOR_DEVIATION
    major = apphand.negotiate(offer((DIN, 3, 0, 5, 1)), ["din"])
    assert major.code is HandshakeCode.FAILED
    assert major.response == {"supportedAppProtocolRes": {"ResponseCode": "Failed_NoNegotiation"}}


def test_unknown_protocols_only_fail() -> None:
    req = offer(("urn:iso:std:iso:15118:-20:DC", 1, 0, 1, 1))
    assert apphand.negotiate(req, ["din", "iso2"]).protocol is None
    with pytest.raises(HandshakeError):
        apphand.negotiate({"supportedAppProtocolRes": {}}, ["din"])


def test_evcc_helpers_roundtrip_with_secc() -> None:
    req = apphand.build_request(["iso2", "din"])
    result = apphand.negotiate(req, ["din"])
    chosen = apphand.parse_response(result.response, ["iso2", "din"])
    assert chosen is not None and chosen.schema == "din"
    refused = apphand.negotiate(apphand.build_request(["iso2"]), ["din"])
    assert apphand.parse_response(refused.response, ["iso2"]) is None
    with pytest.raises(HandshakeError):
        apphand.build_request(["iso20"])
