"""supportedAppProtocol handshake (ISO 15118-2 §8.2): pick the V2G protocol of the session.

The car lists its protocols with a priority (1 = preferred). The SECC picks the car's most
preferred entry among the protocols it has enabled, answers with that entry's SchemaID, and
reports a minor version deviation when the minor numbers differ. Pure: trees in, trees out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any


@dataclass(frozen=True)
class AppProtocol:
    schema: str  # codec schema name: "din" or "iso2"
    namespace: str
    major: int
    minor: int


PROTOCOLS: dict[str, AppProtocol] = {
    "din": AppProtocol("din", "urn:din:70121:2012:MsgDef", 2, 0),
    "iso2": AppProtocol("iso2", "urn:iso:15118:2:2013:MsgDef", 2, 0),
}
BY_NAMESPACE = {p.namespace: p for p in PROTOCOLS.values()}


class HandshakeCode(Enum):
    OK = "OK_SuccessfulNegotiation"
    OK_MINOR_DEVIATION = "OK_SuccessfulNegotiationWithMinorDeviation"
    FAILED = "Failed_NoNegotiation"


class HandshakeError(ValueError):
    """A tree that is not a supportedAppProtocolReq/Res."""


@dataclass(frozen=True)
class Negotiation:
    code: HandshakeCode
    protocol: AppProtocol | None
    schema_id: int | None
    response: dict[str, Any]


def _entries(tree: dict[str, Any]) -> list[dict[str, Any]]:
    body = tree.get("supportedAppProtocolReq")
    if not isinstance(body, dict):
        raise HandshakeError("not a supportedAppProtocolReq")
    entries = body.get("AppProtocol")
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list) or not entries:
        raise HandshakeError("supportedAppProtocolReq lists no AppProtocol")
    return [e for e in entries if isinstance(e, dict)]


def negotiate(tree: dict[str, Any], enabled: Sequence[str]) -> Negotiation:
    """The SECC's answer to a supportedAppProtocolReq, given our enabled protocols (schema names).

    Among entries of equal priority (a car error) our own order decides.
    """
    candidates: list[tuple[int, int, AppProtocol, dict[str, Any]]] = []
    for entry in _entries(tree):
        proto = BY_NAMESPACE.get(str(entry.get("ProtocolNamespace", "")))
        if proto is None or proto.schema not in enabled:
            continue
        if entry.get("VersionNumberMajor") != proto.major:
            continue
        priority = int(entry.get("Priority", 20))
        candidates.append((priority, list(enabled).index(proto.schema), proto, entry))
    if not candidates:
        refused: dict[str, Any] = {
            "supportedAppProtocolRes": {"ResponseCode": HandshakeCode.FAILED.value}}
        return Negotiation(HandshakeCode.FAILED, None, None, refused)
    _, _, proto, entry = min(candidates, key=lambda c: (c[0], c[1]))
    code = HandshakeCode.OK
    if entry.get("VersionNumberMinor") != proto.minor:
        code = HandshakeCode.OK_MINOR_DEVIATION
    schema_id = int(entry["SchemaID"])
    response: dict[str, Any] = {
        "supportedAppProtocolRes": {"ResponseCode": code.value, "SchemaID": schema_id}}
    return Negotiation(code, proto, schema_id, response)


def build_request(protocols: Sequence[str]) -> dict[str, Any]:
    """The EVCC's supportedAppProtocolReq offering `protocols` (schema names), best first."""
    entries = []
    for i, name in enumerate(protocols):
        proto = PROTOCOLS.get(name)
        if proto is None:
            raise HandshakeError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
        entries.append({
            "ProtocolNamespace": proto.namespace,
            "VersionNumberMajor": proto.major,
            "VersionNumberMinor": proto.minor,
            "SchemaID": i + 1,
            "Priority": i + 1,
        })
    return {"supportedAppProtocolReq": {"AppProtocol": entries}}


def parse_response(tree: dict[str, Any], offered: Sequence[str]) -> AppProtocol | None:
    """The EVCC's reading of a supportedAppProtocolRes to `build_request(offered)`: None if refused."""
    body = tree.get("supportedAppProtocolRes")
    if not isinstance(body, dict):
        raise HandshakeError("not a supportedAppProtocolRes")
    code = body.get("ResponseCode")
    if code == HandshakeCode.FAILED.value:
        return None
    if code not in (HandshakeCode.OK.value, HandshakeCode.OK_MINOR_DEVIATION.value):
        raise HandshakeError(f"unknown ResponseCode {code!r}")
    schema_id = body.get("SchemaID")
    if not isinstance(schema_id, int) or not 1 <= schema_id <= len(offered):
        raise HandshakeError(f"SchemaID {schema_id!r} names none of the offered protocols")
    return PROTOCOLS[offered[schema_id - 1]]
