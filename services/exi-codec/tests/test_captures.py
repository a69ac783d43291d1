"""Every V2GTP EXI payload in the shared captures decodes and re-encodes byte for byte.

The schema of each TCP connection follows from its supportedAppProtocol handshake (the response's
SchemaID picks a namespace from the request); a connection seen without its handshake falls back
to the first bytes of each payload (0x80 0x9A DIN, 0x80 0x98 ISO-2).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import ccsbus_exi
from ccsbus.pcapio import read_frames, v2gtp_messages

CAPTURES = Path(__file__).resolve().parents[3].parent / "shared" / "captures"
PT_EXI = 0x8001
NAMESPACES = {"urn:din:70121:2012:MsgDef": "din", "urn:iso:15118:2:2013:MsgDef": "iso2"}


@dataclass
class Connection:
    offered: dict[int, str] = field(default_factory=dict)
    schema: str | None = None  # chosen after the handshake; "" = a schema this codec lacks


def _guess(payload: bytes) -> str | None:
    if payload[:2] == b"\x80\x9a":
        return "din"
    if payload[:2] == b"\x80\x98":
        return "iso2"
    if payload[:1] == b"\x80" and len(payload) > 1 and payload[1] & 0x3F == 0:
        return "apphand"
    return None


def _schema_for(conn: Connection, payload: bytes) -> str | None:
    if conn.schema is None:
        # before the handshake result: AppProtocol messages, else the byte heuristic
        try:
            tree = ccsbus_exi.decode("apphand", payload)
        except ccsbus_exi.ExiError:
            return _guess(payload)
        if "supportedAppProtocolReq" in tree:
            for p in tree["supportedAppProtocolReq"]["AppProtocol"]:
                conn.offered[p["SchemaID"]] = p["ProtocolNamespace"]
        else:
            res = tree["supportedAppProtocolRes"]
            ns = conn.offered.get(res.get("SchemaID", -1), "")
            conn.schema = NAMESPACES.get(ns, "")
        return "apphand"
    return conn.schema or None


def test_captures_decode_and_reencode() -> None:
    if not CAPTURES.is_dir():
        pytest.skip(f"{CAPTURES} is missing")
    files = sorted(p for p in CAPTURES.rglob("*") if p.suffix in (".pcap", ".pcapng"))
    assert files
    counts: Counter[str] = Counter()
    failures: list[str] = []
    skipped = padded = 0
    for path in files:
        conns: dict[frozenset[tuple[str, int]], Connection] = {}
        for msg in v2gtp_messages(read_frames(path)):
            if msg.payload_type != PT_EXI:
                continue
            key = frozenset({(msg.src, msg.sport), (msg.dst, msg.dport)})
            conn = conns.setdefault(key, Connection())
            schema = _schema_for(conn, msg.payload)
            if schema is None:
                skipped += 1  # a protocol this codec does not speak (e.g. ISO 15118-20)
                continue
            where = f"{path.name} {msg.time:.3f} {schema} {msg.payload.hex()}"
            try:
                tree = ccsbus_exi.decode(schema, msg.payload)
            except ccsbus_exi.ExiError as exc:
                failures.append(f"decode {where}: {exc}")
                continue
            body = tree.get("V2G_Message", {}).get("Body", tree)
            name = next(iter(body), "Body") if body else "emptyBody"
            counts[f"{schema} {name}"] += 1
            again = ccsbus_exi.encode(schema, tree)
            tail = msg.payload[len(again):]
            if msg.payload.startswith(again) and tail and not any(tail):
                padded += 1  # the sender added zero bytes after the padded stream
            elif again != msg.payload:
                failures.append(f"re-encode {where}: got {again.hex()}")
    print(f"\n{sum(counts.values())} messages decoded, {skipped} of other protocols skipped, "
          f"{padded} re-encoded without the sender's extra trailing zero bytes")
    for name, n in sorted(counts.items()):
        print(f"  {n:5d}  {name}")
    assert not failures, "\n".join(failures[:20])
    # the shared captures hold 2271 DIN/ISO-2/AppProtocol messages; none may go missing
    assert sum(counts.values()) == 2271
    assert counts["din CurrentDemandReq"] > 0 and counts["iso2 CurrentDemandReq"] > 0
    assert sum(n for k, n in counts.items() if k.startswith("apphand")) > 0
