"""Real raw Ethernet (pcap) across network namespaces on the virtual medium (needs root)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from ccsbus_slac.bench import NetnsBench, Process
from ccsbus_slac.mme import mac_text

pytestmark = pytest.mark.root

LISTENER = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", 15118))
s.settimeout(float(sys.argv[1]))
print("listening", flush=True)
try:
    data, addr = s.recvfrom(100)
    print("got", data.decode(), flush=True)
except TimeoutError:
    print("nothing", flush=True)
"""

SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for _ in range(10):
    try:
        s.sendto(b"hello", (sys.argv[1], 15118, 0, socket.if_nametoindex("eth1")))
    except OSError:
        pass
    time.sleep(0.1)
"""


def link_local(bench: NetnsBench, index: int) -> str:
    out = subprocess.run(["ip", "-n", bench.hosts[index].namespace, "-6", "-o", "addr", "show", "dev", "eth1",
                          "scope", "link"], capture_output=True, text=True, check=True).stdout
    return out.split("inet6 ")[1].split("/")[0]


def udp_crosses(bench: NetnsBench, src: int, dst: int) -> bool:
    listener = bench.spawn(dst, [sys.executable, "-c", LISTENER, "2.0"])
    assert listener.readline(5) == "listening"
    subprocess.run(["ip", "netns", "exec", bench.hosts[src].namespace, sys.executable, "-c", SENDER,
                    link_local(bench, dst)], check=True, timeout=10)
    line = listener.readline(5)
    listener.stop()
    return line == "got hello"


def match(evse: Process, pev: Process, timeout: float = 10) -> tuple[dict[str, object], dict[str, object]]:
    evse.send("start")
    pev.send("start")
    return pev.wait_event("link_up", timeout), evse.wait_event("link_up", timeout)


def test_pev_matches_evse_across_namespaces_and_ipv6_flows_only_after(
        netns_bench: Callable[[int], NetnsBench]) -> None:
    bench = netns_bench(2)
    bench.start_vmodem(atten=[4, 8])
    evse, pev = bench.agent(0, "EVSE"), bench.agent(1, "PEV")
    evse_ready, pev_ready = evse.wait_event("ready", 10), pev.wait_event("ready", 10)
    assert evse_ready["host_mac"] == mac_text(bench.hosts[0].mac)
    assert str(pev_ready["firmware"]).startswith("MAC-QCA7000")
    assert not udp_crosses(bench, 1, 0)  # different networks: IPv6 does not cross the medium
    up_pev, up_evse = match(evse, pev)
    assert up_pev["peer_mac"] == mac_text(bench.hosts[0].mac)
    assert up_evse["peer_mac"] == mac_text(bench.hosts[1].mac)
    assert up_pev["nid"] == up_evse["nid"]
    assert udp_crosses(bench, 1, 0)  # matched: V2G traffic flows
    evse.send("stop")
    pev.send("stop")
    pev.wait_event("link_down", 5)
    evse.wait_event("link_down", 5)
    time.sleep(0.2)
    assert not udp_crosses(bench, 1, 0)  # unplugged: the network is gone again
    # re-plug works at once (no fixed sleep after CM_SET_KEY)
    t0 = time.monotonic()
    up_again, _ = match(evse, pev)
    assert up_again["nid"] != up_pev["nid"] and time.monotonic() - t0 < 5  # far below a 10 s settle sleep


def test_pev_picks_the_right_evse_of_three_across_namespaces(netns_bench: Callable[[int], NetnsBench]) -> None:
    bench = netns_bench(4)
    bench.start_vmodem(atten=[0, 30, 6, 18])
    pev = bench.agent(0, "PEV")
    evses = [bench.agent(i, "EVSE") for i in (1, 2, 3)]
    for proc in (pev, *evses):
        proc.wait_event("ready", 10)
    for e in evses:
        e.send("start")  # the chargers are waiting when the car starts SLAC
    for e in evses:
        e.wait_for(lambda ev: ev.get("state") == "WAIT_PARM_REQ", 5)
    pev.send("start")
    up = pev.wait_event("link_up", 10)
    assert up["peer_mac"] == mac_text(bench.hosts[2].mac)
    assert up["attenuation"] == 6
    evses[1].wait_event("link_up", 5)


ROGUE = """
import socket, sys, time
from ccsbus_slac.mme import AttenCharInd, Frame
from ccsbus_slac.link import interface_mac
pev = bytes.fromhex(sys.argv[1])
me = interface_mac("eth1")
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth1", 0))
fake = Frame(dst=pev, src=me, body=AttenCharInd(source_address=pev, run_id=b"\\x5a" * 8, num_sounds=10,
                                                aag=[0] * 58)).pack()
print("spoofing", flush=True)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    s.send(fake)
    time.sleep(0.01)
"""


def test_wrong_run_id_is_ignored_across_namespaces(netns_bench: Callable[[int], NetnsBench]) -> None:
    bench = netns_bench(3)
    bench.start_vmodem(atten=[0, 20, 0])
    pev, evse = bench.agent(0, "PEV"), bench.agent(1, "EVSE")
    pev.wait_event("ready", 10)
    evse.wait_event("ready", 10)
    rogue = bench.spawn(2, [sys.executable, "-c", ROGUE, bench.hosts[0].mac.hex(), "3"])
    assert rogue.readline(10) == "spoofing"
    up, _ = match(evse, pev)
    assert up["peer_mac"] == mac_text(bench.hosts[1].mac)
    assert up["attenuation"] == 20


def test_no_modem_gives_clear_error_within_configured_time(netns_bench: Callable[[int], NetnsBench]) -> None:
    bench = netns_bench(1)  # no vmodem: nothing answers on the cable
    agent = bench.agent(0, "EVSE", "modem_discovery_timeout=0.5")
    error = agent.wait_event("error", 15)
    assert agent.popen.wait(5) == 3
    # from opening the link to the error: the configured time (plus scheduling slack on a busy machine)
    assert 0.5 <= float(error["waited"]) < 1.5
    for hint in ("pcap:eth1", "interface", "cable", "power", "PIB", "0.5 s"):
        assert hint in str(error["reason"])


def test_listen_host_joins_the_observed_network(netns_bench: Callable[[int], NetnsBench]) -> None:
    bench = netns_bench(3)
    bench.start_vmodem(atten=[0, 10, 10])
    pev, evse, listener = bench.agent(0, "PEV"), bench.agent(1, "EVSE"), bench.agent(2, "LISTEN")
    for proc in (pev, evse, listener):
        proc.wait_event("ready", 10)
    up, _ = match(evse, pev)
    joined = listener.wait_event("link_up", 10)
    assert joined["nid"] == up["nid"]
    assert joined["peer_mac"] == mac_text(bench.hosts[1].mac)
    assert udp_crosses(bench, 0, 2)  # the listener is a member of the network now
