"""The capture pieces of `ccsbus sim`: the UDP tap between a SLAC link and its modem port, and the
rebuilt IPv6/TCP frames of the V2G exchange (checked by tshark where it is installed)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from ccsbus.pcapio import parse_ethernet, parse_ipv6, parse_tcp, read_frames
from ccsbus_tools.sim import free_udp_port
from ccsbus_tools.simnet import UdpTap
from ccsbus_tools.simpcap import PlcCapture, link_local, tcp_frame


def test_tap_relays_both_ways_and_reports_each_frame() -> None:
    async def scenario() -> tuple[list[tuple[bytes, str]], bytes, bytes]:
        loop = asyncio.get_running_loop()
        modem = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        modem.bind(("127.0.0.1", 0))
        modem.setblocking(False)
        seen: list[tuple[bytes, str]] = []
        tap = UdpTap(free_udp_port(), modem.getsockname()[1], lambda f, d, t: seen.append((f, d)))
        await tap.open()
        host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        host.setblocking(False)
        host.connect(("127.0.0.1", tap.listen_port))
        frame_out = bytes(range(60))
        host.send(b"")  # registration, not a frame
        host.send(frame_out)
        registration, addr = await asyncio.wait_for(loop.sock_recvfrom(modem, 2048), 2)
        assert registration == b""
        at_modem, addr = await asyncio.wait_for(loop.sock_recvfrom(modem, 2048), 2)
        frame_in = bytes(reversed(range(60)))
        modem.sendto(frame_in, addr)
        at_host = await asyncio.wait_for(loop.sock_recv(host, 2048), 2)
        tap.close()
        host.close()
        modem.close()
        return seen, at_modem, at_host

    seen, at_modem, at_host = asyncio.run(scenario())
    assert at_modem == bytes(range(60))
    assert at_host == bytes(reversed(range(60)))
    assert [d for _, d in seen] == ["out", "in"]


def test_link_local_is_the_modified_eui64() -> None:
    assert link_local(bytes.fromhex("001122334455")).hex() == "fe80000000000000021122fffe334455"


def test_rebuilt_frames_parse_and_carry_correct_checksums(tmp_path: Path) -> None:
    mac_a, mac_b = bytes.fromhex("02aa00000001"), bytes.fromhex("02bb00000002")
    frame = tcp_frame(mac_a, mac_b, link_local(mac_a), link_local(mac_b), 49152, 15118, 7, 9, 0x18,
                      b"\x01\xfe\x80\x01\x00\x00\x00\x02\x80\x98")
    eth = parse_ethernet(frame)
    assert eth is not None
    ip = parse_ipv6(eth.payload)
    assert ip is not None
    tcp = parse_tcp(ip.payload)
    assert tcp is not None and (tcp.sport, tcp.dport, tcp.seq) == (49152, 15118, 7)
    assert tcp.payload.endswith(b"\x80\x98")
    cap = PlcCapture()
    cap.v2g_message({"direction": "tx", "protocol": "apphand", "time": 10.0, "tree": {
        "supportedAppProtocolReq": {"AppProtocol": [{"ProtocolNamespace": "urn:din:70121:2012:MsgDef",
                                                     "VersionNumberMajor": 2, "VersionNumberMinor": 0,
                                                     "SchemaID": 1, "Priority": 1}]}}})
    cap.v2g_message({"direction": "rx", "protocol": "apphand", "time": 10.1, "tree": {
        "supportedAppProtocolRes": {"ResponseCode": "OK_SuccessfulNegotiation", "SchemaID": 1}}})
    path = tmp_path / "v2g.pcap"
    assert cap.write(path) == 6 and not cap.encode_failures
    assert len(list(read_frames(path))) == 6
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed (the checksum check needs it)")
    out = subprocess.run([tshark, "-r", str(path), "-o", "tcp.check_checksum:TRUE",
                          "-Y", "tcp.checksum.status == 0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"frames with a bad TCP checksum:\n{out.stdout}"
    good = subprocess.run([tshark, "-r", str(path), "-o", "tcp.check_checksum:TRUE",
                           "-Y", "tcp.checksum.status == 1"], capture_output=True, text=True, timeout=60)
    assert len(good.stdout.strip().splitlines()) == 6
