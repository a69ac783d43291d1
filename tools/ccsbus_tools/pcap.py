"""`ccsbus pcap decode <file>`: every SLAC, SDP and V2G message of a capture, readable or as JSON.

Works on pcap and pcapng (field captures, the simulation's `session.pcap`). SLAC frames are decoded
with the SLAC service's MME codec, SDP with the v2g service's SDP codec, V2G messages with the EXI
codec; the schema of each TCP connection is the one its supportedAppProtocol exchange picked.
`--stats` adds CableCheck / PreCharge durations, response times per message type and the vendors of
the charger and car side from their MAC addresses.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ccsbus.pcapio import (
    CaptureError,
    Frame,
    homeplug_frames,
    ipv6_text,
    mac_text,
    read_frames,
    sdp_datagrams,
    v2gtp_messages,
)

V2GTP_EXI = 0x8001
V2GTP_SDP_REQ = 0x9000
V2GTP_SDP_RES = 0x9001

# OUI (first three MAC bytes) -> organisation, for the ones met on CCS links: PLC modems, charger
# controllers, car charge controllers, test systems (names as the IEEE registry lists them)
OUI_VENDORS: dict[str, str] = {
    "00:B0:52": "Qualcomm Atheros (HomePlug GP modem)",
    "00:01:87": "I2SE (PLC modem board)",
    "00:13:D7": "SPiDCOM Technologies (PLC chip)",
    "BC:F2:AF": "devolo (PLC modem)",
    "88:FC:A6": "devolo (PLC modem)",
    "98:DE:D0": "TP-Link (PLC adapter)",
    "98:48:27": "TP-Link (PLC adapter)",
    "50:91:E3": "TP-Link (PLC adapter)",
    "F4:F2:6D": "TP-Link (PLC adapter)",
    "64:4D:70": "dSPACE (test system)",
    "98:ED:5C": "Tesla",
    "4C:FC:AA": "Tesla",
    "48:C5:8D": "Lear (car charge controller)",
    "00:18:87": "Metasystem (car charge controller)",
    "80:1F:12": "Microchip Technology",
    "54:10:EC": "Microchip Technology",
    "00:1E:C0": "Microchip Technology",
    "B8:27:EB": "Raspberry Pi",
    "DC:A6:32": "Raspberry Pi",
    "00:E0:4C": "Realtek",
    "DC:0E:A1": "Compal (laptop)",
    "A0:CE:C8": "CE Link (USB Ethernet adapter)",
    "DC:44:27": "IEEE Registration Authority block (vendor in the next digits)",
}


def vendor_of(mac: str) -> str:
    """The organisation owning the MAC's OUI, `locally administered` or `unknown`."""
    if not mac:
        return "unknown"
    oui = mac.upper()[:8]
    if oui in OUI_VENDORS:
        return OUI_VENDORS[oui]
    if int(oui[:2], 16) & 0x02:
        return "locally administered (no vendor)"
    return "unknown"


@dataclass
class Entry:
    """One decoded message of the capture."""

    index: int
    time: float          # seconds since the first frame
    kind: str            # SLAC, SDP or V2G
    name: str
    src: str
    dst: str
    schema: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    src_mac: str = ""
    dst_mac: str = ""

    def line(self) -> str:
        head = f"{self.time:10.3f}  {self.kind:<4} {self.src} > {self.dst}  {self.name}"
        if self.error:
            return f"{head}  UNDECODABLE: {self.error}"
        return head + (f"  {_brief(self.fields)}" if self.fields else "")


def _brief(fields: dict[str, Any], limit: int = 140) -> str:
    text = json.dumps(fields, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass
class Listing:
    file: str
    frames: int = 0
    start: float | None = None
    entries: list[Entry] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.entries:
            out[e.kind] = out.get(e.kind, 0) + 1
        out["undecodable"] = sum(1 for e in self.entries if e.error)
        return out


# ------------------------------------------------------------------ decoders
def slac_entry(index: int, t: float, data: bytes) -> Entry:
    from ccsbus_slac.mme import ParseError, fields_of, parse_frame

    src, dst = mac_text(data[6:12]), mac_text(data[0:6])
    try:
        frame = parse_frame(data)
    except ParseError as exc:
        return Entry(index, t, "SLAC", "?", src, dst, error=str(exc))
    fields = fields_of(frame.body) if frame.known else {}
    return Entry(index, t, "SLAC", frame.name, src, dst, fields=fields)


def sdp_entry(index: int, t: float, src: str, dst: str, payload: bytes) -> Entry:
    from ccsbus_v2g.sdp import SdpError, parse_request, parse_response

    if len(payload) < 8 or payload[0] != 0x01 or payload[1] != 0xFE:
        return Entry(index, t, "SDP", "?", src, dst, error="no V2GTP header")
    ptype = int.from_bytes(payload[2:4], "big")
    body = payload[8:]
    try:
        if ptype == V2GTP_SDP_REQ:
            req = parse_request(body)
            return Entry(index, t, "SDP", "SDP request", src, dst,
                         fields={"security": req.security.name, "transport": req.transport.name})
        if ptype == V2GTP_SDP_RES:
            res = parse_response(body)
            return Entry(index, t, "SDP", "SDP response", src, dst,
                         fields={"address": str(res.address), "port": res.port,
                                 "security": res.security.name, "transport": res.transport.name})
    except SdpError as exc:
        return Entry(index, t, "SDP", "?", src, dst, error=str(exc))
    return Entry(index, t, "SDP", f"payload type 0x{ptype:04X}", src, dst)


def schema_for_namespace(namespace: str) -> str | None:
    ns = namespace.lower()
    if "din:70121" in ns:
        return "din"
    if "iso:15118:2" in ns:
        return "iso2"
    return None


@dataclass
class _Connection:
    """What one TCP connection agreed: the offered protocols and the one picked."""

    offered: dict[int, str] = field(default_factory=dict)  # SchemaID -> namespace
    schema: str | None = None


def v2g_name(tree: dict[str, Any]) -> str:
    if "V2G_Message" in tree:
        body = tree["V2G_Message"].get("Body") or {}
        return next(iter(body), "?") if isinstance(body, dict) else "?"
    return next(iter(tree), "?")


class V2gDecoder:
    """Decodes the EXI of each connection with the schema its handshake chose."""

    def __init__(self, decode: Callable[[str, bytes], dict[str, Any]]) -> None:
        self.decode = decode
        self.connections: dict[tuple[str, int, str, int], _Connection] = {}

    def entry(self, index: int, t: float, src: str, sport: int, dst: str, dport: int,
              payload: bytes) -> Entry:
        key = (src, sport, dst, dport) if (src, sport) < (dst, dport) else (dst, dport, src, sport)
        conn = self.connections.setdefault(key, _Connection())
        candidates = [conn.schema] if conn.schema else ["apphand"]
        if not conn.schema:
            candidates += ["din", "iso2"]  # a capture that starts after the handshake
        errors = []
        for schema in candidates:
            try:
                tree = self.decode(schema, payload)
            except Exception as exc:  # the codec's ExiError: try the next schema, report all
                errors.append(f"{schema}: {exc}")
                continue
            self._learn(conn, schema, tree)
            return Entry(index, t, "V2G", v2g_name(tree), src, dst, schema=schema, fields=tree)
        return Entry(index, t, "V2G", "?", src, dst, error="; ".join(errors))

    @staticmethod
    def _learn(conn: _Connection, schema: str, tree: dict[str, Any]) -> None:
        if schema != "apphand":
            conn.schema = schema
            return
        req = tree.get("supportedAppProtocolReq")
        if isinstance(req, dict):
            protocols = req.get("AppProtocol") or []
            for proto in protocols if isinstance(protocols, list) else [protocols]:
                if isinstance(proto, dict):
                    conn.offered[int(proto.get("SchemaID", -1))] = str(proto.get("ProtocolNamespace", ""))
        res = tree.get("supportedAppProtocolRes")
        if isinstance(res, dict) and "SchemaID" in res:
            namespace = conn.offered.get(int(res["SchemaID"]), "")
            conn.schema = schema_for_namespace(namespace)
            if conn.schema is None and len(conn.offered) == 0:
                conn.schema = None


def _codec() -> Callable[[str, bytes], dict[str, Any]]:
    import ccsbus_exi

    def decode(schema: str, data: bytes) -> dict[str, Any]:
        return ccsbus_exi.decode(schema, data)

    return decode


def decode_capture(path: Path, progress: Callable[[int], None] | None = None,
                   decode: Callable[[str, bytes], dict[str, Any]] | None = None) -> Listing:
    """Read the capture once and decode every SLAC, SDP and V2G message in time order."""
    listing = Listing(file=str(path))
    frames: list[Frame] = []
    for frame in read_frames(path):
        frames.append(frame)
        if progress is not None and len(frames) % 2000 == 0:
            progress(len(frames))
    listing.frames = len(frames)
    if not frames:
        return listing
    start = frames[0].time
    listing.start = start
    entries: list[Entry] = []
    for frame, _eth in homeplug_frames(frames):
        entries.append(slac_entry(frame.index, frame.time - start, frame.data))
    for frame, ip, udp in sdp_datagrams(frames):
        entries.append(sdp_entry(frame.index, frame.time - start, f"[{ipv6_text(ip.src)}]:{udp.sport}",
                                 f"[{ipv6_text(ip.dst)}]:{udp.dport}", udp.payload))
    v2g = V2gDecoder(decode or _codec())
    for msg in v2gtp_messages(frames):
        if msg.payload_type != V2GTP_EXI:
            continue
        entry = v2g.entry(-1, msg.time - start, msg.src, msg.sport, msg.dst, msg.dport, msg.payload)
        entry.src, entry.dst = f"[{msg.src}]:{msg.sport}", f"[{msg.dst}]:{msg.dport}"
        entry.src_mac, entry.dst_mac = msg.src_mac, msg.dst_mac
        entries.append(entry)
    entries.sort(key=lambda e: e.time)
    listing.entries = entries
    return listing


# ------------------------------------------------------------------ statistics
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted or unsorted values (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _base(name: str) -> str:
    for suffix in ("Req", "Res"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def response_times(entries: Iterable[Entry]) -> dict[str, dict[str, float]]:
    """Request -> response time (ms) per message type, per connection, percentiles over the file."""
    waiting: dict[tuple[str, str], Entry] = {}  # (client, base) -> its open request
    times: dict[str, list[float]] = {}
    for e in entries:
        if e.kind != "V2G" or e.error:
            continue
        base = _base(e.name)
        if e.name.endswith("Req"):
            waiting[(e.src, base)] = e
        elif e.name.endswith("Res"):
            req = waiting.pop((e.dst, base), None)
            if req is not None:
                times.setdefault(e.name, []).append((e.time - req.time) * 1000.0)
    return {name: {"count": len(v), "p50": percentile(v, 50), "p90": percentile(v, 90),
                   "p99": percentile(v, 99), "max": max(v)}
            for name, v in sorted(times.items())}


def phase_duration(entries: list[Entry], base: str) -> float | None:
    """From the first `<base>Req` to the last `<base>Res` (seconds), None when absent."""
    reqs = [e.time for e in entries if e.kind == "V2G" and e.name == f"{base}Req"]
    ress = [e.time for e in entries if e.kind == "V2G" and e.name == f"{base}Res"]
    if not reqs or not ress:
        return None
    return round(max(ress) - min(reqs), 3)


def sides(entries: list[Entry]) -> dict[str, dict[str, str]]:
    """The charger (EVSE) and car (PEV) MACs: from SLAC_PARM and the V2G request direction."""
    evse = pev = ""
    for e in entries:
        if e.kind == "SLAC" and not e.error:
            if e.name.startswith("CM_SLAC_PARM.CNF") and not evse:
                evse = e.src
            elif e.name.startswith("CM_SLAC_PARM.REQ") and not pev:
                pev = e.src
        elif e.kind == "V2G" and not e.error and e.src_mac:
            if e.name.endswith("Req"):
                pev = pev or e.src_mac
                evse = evse or e.dst_mac
            elif e.name.endswith("Res"):
                evse = evse or e.src_mac
                pev = pev or e.dst_mac
    return {"evse": {"mac": evse, "vendor": vendor_of(evse)},
            "pev": {"mac": pev, "vendor": vendor_of(pev)}}


def statistics(listing: Listing) -> dict[str, Any]:
    entries = listing.entries
    v2g = [e for e in entries if e.kind == "V2G" and not e.error]
    schemas = sorted({e.schema for e in v2g if e.schema != "apphand"})
    return {
        "frames": listing.frames,
        "counts": listing.counts(),
        "protocols": schemas,
        "cable_check_s": phase_duration(entries, "CableCheck"),
        "pre_charge_s": phase_duration(entries, "PreCharge"),
        "current_demand_s": phase_duration(entries, "CurrentDemand"),
        "response_ms": response_times(entries),
        "sides": sides(entries),
    }


# ------------------------------------------------------------------ output
def listing_json(listing: Listing, with_stats: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"file": listing.file, "frames": listing.frames, "start": listing.start,
                           "messages": [asdict(e) for e in listing.entries]}
    if with_stats:
        out["stats"] = statistics(listing)
    return out


def stats_text(stats: dict[str, Any]) -> str:
    lines = ["", "statistics"]
    counts = stats["counts"]
    lines.append(f"  frames {stats['frames']}, SLAC {counts.get('SLAC', 0)}, SDP {counts.get('SDP', 0)}, "
                 f"V2G {counts.get('V2G', 0)}, undecodable {counts['undecodable']}")
    lines.append(f"  protocol {', '.join(stats['protocols']) or '-'}")
    for key, label in (("cable_check_s", "CableCheck"), ("pre_charge_s", "PreCharge"),
                       ("current_demand_s", "CurrentDemand loop")):
        value = stats[key]
        lines.append(f"  {label:<20} {'-' if value is None else f'{value:.3f} s'}")
    for side in ("evse", "pev"):
        info = stats["sides"][side]
        lines.append(f"  {side.upper():<5} {info['mac'] or '-':<18} {info['vendor']}")
    if stats["response_ms"]:
        lines.append(f"  {'response time (ms)':<32} {'n':>5} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
        for name, v in stats["response_ms"].items():
            lines.append(f"  {name:<32} {int(v['count']):>5} {v['p50']:>8.1f} {v['p90']:>8.1f} "
                         f"{v['p99']:>8.1f} {v['max']:>8.1f}")
    return "\n".join(lines)


def _progress_printer() -> Callable[[int], None] | None:
    if not sys.stderr.isatty():
        return None

    def show(count: int) -> None:
        print(f"\rreading frames: {count}", end="", file=sys.stderr, flush=True)

    return show


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ccsbus pcap",
        description="Decode the SLAC, SDP and V2G messages of a pcap/pcapng capture.",
        epilog="example: ccsbus pcap decode session.pcap --stats;  "
               "ccsbus pcap decode field.pcapng --json > field.json")
    sub = parser.add_subparsers(dest="command", required=True)
    dec = sub.add_parser(
        "decode", help="list every SLAC, SDP and V2G message with its time",
        description="List every SLAC (HomePlug MME), SDP and V2G (EXI: supportedAppProtocol, "
                    "DIN 70121, ISO 15118-2) message with its time since the first frame. The V2G "
                    "schema of each TCP connection is the one its supportedAppProtocol exchange "
                    "picked. Exit code 1 when a V2G message cannot be decoded.")
    dec.add_argument("file", type=Path, help="pcap or pcapng file")
    dec.add_argument("--json", action="store_true", help="one JSON document instead of text lines")
    dec.add_argument("--stats", action="store_true",
                     help="CableCheck/PreCharge durations, response-time percentiles per message, "
                          "charger and car vendor from the MAC")
    dec.add_argument("--full", action="store_true", help="text output: print each message's whole tree")
    dec.add_argument("--only", choices=["SLAC", "SDP", "V2G"], help="text output: only this kind")
    args = parser.parse_args(argv)
    try:
        listing = decode_capture(args.file, _progress_printer())
    except (OSError, CaptureError) as exc:
        print(f"ccsbus pcap: {args.file}: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"ccsbus pcap: a decoder is missing ({exc}); install the ccsbus package with its "
              "services", file=sys.stderr)
        return 2
    if sys.stderr.isatty():
        print("\r" + " " * 40 + "\r", end="", file=sys.stderr)
    if args.json:
        json.dump(listing_json(listing, args.stats), sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        for entry in listing.entries:
            if args.only and entry.kind != args.only:
                continue
            print(entry.line() if not args.full else
                  f"{entry.line()}\n{json.dumps(entry.fields, indent=2, default=str)}")
        if args.stats:
            print(stats_text(statistics(listing)))
    bad = [e for e in listing.entries if e.kind == "V2G" and e.error]
    return 1 if bad else 0


def iter_entries(path: Path) -> Iterator[Entry]:
    """The decoded messages of a capture (for tools that want them one by one)."""
    yield from decode_capture(path).entries
