"""V2GTP framing (ISO 15118-2 §7.8.3, DIN 70121 §8.7.3): an 8-byte header in front of every payload.

Header: protocol version 0x01, its bitwise inverse 0xFE, payload type (u16, big endian), payload
length (u32, big endian). Pure code: no sockets, so the TCP and UDP layers and the tests share it.
"""

from __future__ import annotations

import struct
from enum import Enum

PROTOCOL_VERSION = 0x01
INVERSE_PROTOCOL_VERSION = 0xFE
HEADER_LEN = 8

PAYLOAD_EXI = 0x8001
PAYLOAD_SDP_REQ = 0x9000
PAYLOAD_SDP_RES = 0x9001

KNOWN_PAYLOAD_TYPES = frozenset({PAYLOAD_EXI, PAYLOAD_SDP_REQ, PAYLOAD_SDP_RES})

# The largest V2G message (a CertificateInstallationRes with chains) stays well below this.
DEFAULT_MAX_PAYLOAD = 65536

_HEADER = struct.Struct(">BBHI")


class V2gtpErrorReason(Enum):
    BAD_VERSION = "bad protocol version"
    BAD_INVERSE = "inverse protocol version does not match"
    UNKNOWN_PAYLOAD_TYPE = "unknown payload type"
    TOO_LONG = "declared payload length above the limit"
    TRUNCATED = "datagram shorter than its declared length"
    TRAILING = "bytes after the declared payload in a datagram"


class V2gtpError(Exception):
    """A header the standard says to refuse; the TCP layer closes the connection on it."""

    def __init__(self, reason: V2gtpErrorReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"V2GTP {reason.value}: {detail}")


def encode(payload: bytes, payload_type: int = PAYLOAD_EXI) -> bytes:
    """One V2GTP message: header + payload."""
    if not 0 <= payload_type <= 0xFFFF:
        raise ValueError(f"payload type {payload_type} does not fit 16 bits")
    return (
        _HEADER.pack(PROTOCOL_VERSION, INVERSE_PROTOCOL_VERSION, payload_type, len(payload))
        + payload
    )


def parse_header(
    header: bytes,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    known_types: frozenset[int] = KNOWN_PAYLOAD_TYPES,
) -> tuple[int, int]:
    """(payload_type, payload_length) of an 8-byte header, or V2gtpError naming what is wrong."""
    version, inverse, payload_type, length = _HEADER.unpack(header[:HEADER_LEN])
    if version != PROTOCOL_VERSION:
        raise V2gtpError(V2gtpErrorReason.BAD_VERSION, f"version 0x{version:02x}, expected 0x01")
    if inverse != (version ^ 0xFF):
        raise V2gtpError(V2gtpErrorReason.BAD_INVERSE, f"inverse 0x{inverse:02x}, expected 0xfe")
    if payload_type not in known_types:
        raise V2gtpError(
            V2gtpErrorReason.UNKNOWN_PAYLOAD_TYPE, f"payload type 0x{payload_type:04x}"
        )
    if length > max_payload:
        raise V2gtpError(V2gtpErrorReason.TOO_LONG, f"{length} bytes, limit {max_payload}")
    return payload_type, length


def decode_datagram(data: bytes, max_payload: int = DEFAULT_MAX_PAYLOAD) -> tuple[int, bytes]:
    """One whole V2GTP message from a UDP datagram (SDP): exactly header + declared payload."""
    if len(data) < HEADER_LEN:
        raise V2gtpError(
            V2gtpErrorReason.TRUNCATED, f"{len(data)} bytes, header needs {HEADER_LEN}"
        )
    payload_type, length = parse_header(data, max_payload)
    body = data[HEADER_LEN:]
    if len(body) < length:
        raise V2gtpError(V2gtpErrorReason.TRUNCATED, f"{len(body)} of {length} payload bytes")
    if len(body) > length:
        raise V2gtpError(V2gtpErrorReason.TRAILING, f"{len(body) - length} extra bytes")
    return payload_type, body


class V2gtpReader:
    """Reassembles V2GTP messages from a TCP byte stream cut into arbitrary segments."""

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self._pending: tuple[int, int] | None = None  # header of the message being read

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add received bytes; return every (payload_type, payload) completed by them.

        Raises V2gtpError as soon as a header is bad; the reader is then unusable, as the stream
        has lost its framing (the connection must be closed).
        """
        self._buf += data
        out: list[tuple[int, bytes]] = []
        while True:
            if self._pending is None:
                if len(self._buf) < HEADER_LEN:
                    return out
                self._pending = parse_header(bytes(self._buf[:HEADER_LEN]), self.max_payload)
                del self._buf[:HEADER_LEN]
            payload_type, length = self._pending
            if len(self._buf) < length:
                return out
            out.append((payload_type, bytes(self._buf[:length])))
            del self._buf[:length]
            self._pending = None
