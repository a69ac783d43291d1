"""Non-root mode: drivers over UdpLink against the virtual modem on loopback (real sockets)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from ccsbus_slac.driver import Driver, ModemNotFound
from ccsbus_slac.evse_fsm import EvseState
from ccsbus_slac.fsm import LinkUp
from ccsbus_slac.link import UdpLink
from ccsbus_slac.mme import (
    LOCAL_MODEM,
    AttenCharInd,
    Frame,
    LinkStatusCnf,
    LinkStatusReq,
    SetKeyReq,
    SlacMatchReq,
    parse_frame,
    vendor_frame,
)
from ccsbus_slac.nid import nid_from_nmk
from ccsbus_slac.settings import SlacSettings
from ccsbus_slac.vmodem import PortConfig, VirtualModem

SETTINGS = SlacSettings(link="udp")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self, text: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.getMessage() == text]


@pytest.fixture
def slac_log() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("ccsbus.slac")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


async def medium(*atten: int) -> VirtualModem:
    vm = VirtualModem([PortConfig("udp", "127.0.0.1:0", atten=a) for a in atten], join_delay=0.02)
    await vm.open()
    return vm


async def driver(vm: VirtualModem, index: int, role: str, settings: SlacSettings = SETTINGS) -> Driver:
    port = vm.ports[index]
    assert hasattr(port, "port")
    d = Driver(role, UdpLink("127.0.0.1", port.port), settings)
    await d.open()
    await d.discover()
    return d


def link_up_future(d: Driver) -> asyncio.Future[LinkUp]:
    fut: asyncio.Future[LinkUp] = asyncio.get_running_loop().create_future()
    d.on_link_up.append(lambda a: fut.done() or fut.set_result(a))
    return fut


def sync(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test on its own event loop, closing what it put into `cleanup` afterwards."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        async def main() -> None:
            items: list[Driver | VirtualModem] = []
            if "cleanup" in kwargs:
                kwargs["cleanup"] = items
            try:
                await fn(*args, **kwargs)
            finally:
                for item in reversed(items):
                    if isinstance(item, Driver):
                        await item.close()
                    else:
                        item.close()

        asyncio.run(main())

    return wrapper


@pytest.fixture
def cleanup() -> list[Driver | VirtualModem]:
    return []  # replaced by `sync` with the list it closes


@sync
async def test_pev_matches_evse_over_udp(cleanup: list[Driver | VirtualModem]) -> None:
    vm = await medium(3, 9)
    cleanup.append(vm)
    pev, evse = await driver(vm, 0, "PEV"), await driver(vm, 1, "EVSE")
    cleanup += [pev, evse]
    assert pev.modem is not None and pev.modem.version.startswith("MAC-QCA7000")
    pev_up, evse_up = link_up_future(pev), link_up_future(evse)
    t0 = time.monotonic()
    evse.start("cp B 5 %")
    pev.start("cp B 5 %")
    up = await asyncio.wait_for(pev_up, 5)
    other = await asyncio.wait_for(evse_up, 5)
    assert time.monotonic() - t0 < 3.0  # the protocol's own time is checked on the simulated clock
    assert up.peer_mac == evse.link.mac and other.peer_mac == pev.link.mac and up.nid == other.nid
    assert pev.machine.attenuation == [12] * 58


@sync
async def test_pev_picks_right_evse_of_three_over_udp(cleanup: list[Driver | VirtualModem]) -> None:
    vm = await medium(0, 25, 7, 14)
    cleanup.append(vm)
    pev = await driver(vm, 0, "PEV")
    evses = [await driver(vm, i, "EVSE") for i in (1, 2, 3)]
    cleanup += [pev, *evses]
    pev_up = link_up_future(pev)
    for e in evses:
        e.start("cp")
    pev.start("cp")
    up = await asyncio.wait_for(pev_up, 5)
    assert up.peer_mac == evses[1].link.mac
    await asyncio.sleep(0.2)
    assert evses[1].machine.state is EvseState.MATCHED
    assert evses[0].machine.state is EvseState.WAIT_MATCH_REQ and evses[2].machine.state is EvseState.WAIT_MATCH_REQ


@sync
async def test_wrong_run_id_is_ignored_over_udp(cleanup: list[Driver | VirtualModem], slac_log: Records) -> None:
    vm = await medium(0, 20, 0)
    cleanup.append(vm)
    pev, evse = await driver(vm, 0, "PEV"), await driver(vm, 1, "EVSE")
    rogue = UdpLink("127.0.0.1", vm.ports[2].port)  # type: ignore[union-attr]
    await rogue.open()
    cleanup += [pev, evse]
    pev_up = link_up_future(pev)
    evse.start("cp")
    pev.start("cp")

    async def spoof() -> None:
        # a perfect result for a session that is not the PEV's: it must not win
        for _ in range(30):
            fake = Frame(dst=pev.link.mac, src=rogue.mac, body=AttenCharInd(
                source_address=pev.link.mac, run_id=b"\x5a" * 8, num_sounds=10, aag=[0] * 58))
            rogue.send(fake.pack())
            await asyncio.sleep(0.02)

    spoofer = asyncio.create_task(spoof())
    up = await asyncio.wait_for(pev_up, 5)
    spoofer.cancel()
    rogue.close()
    assert up.peer_mac == evse.link.mac
    ignored = [r for r in slac_log.events("slac frame ignored") if "RunID" in str(getattr(r, "fields", {}))]
    assert ignored


@sync
async def test_no_modem_gives_clear_error_within_configured_time() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        silent_port = probe.getsockname()[1]  # bound and silent: a modem that never answers
        settings = dataclasses.replace(SETTINGS, modem_discovery_timeout=0.4)
        d = Driver("EVSE", UdpLink("127.0.0.1", silent_port), settings)
        await d.open()
        t0 = time.monotonic()
        with pytest.raises(ModemNotFound) as info:
            await d.discover()
        elapsed = time.monotonic() - t0
        await d.close()
    assert 0.35 <= elapsed < 1.2
    text = str(info.value)
    for hint in ("interface", "cable", "power", "PIB", "0.4 s"):
        assert hint in text


@sync
async def test_bad_frames_are_ignored_one_log_line_each(cleanup: list[Driver | VirtualModem],
                                                        slac_log: Records) -> None:
    """Short frame, unknown MMTYPE, wrong MMV, out-of-state message: ignored, the driver keeps going."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fake_modem:
        fake_modem.bind(("127.0.0.1", 0))
        fake_modem.settimeout(2)
        d = Driver("EVSE", UdpLink("127.0.0.1", fake_modem.getsockname()[1]), SETTINGS)
        cleanup.append(d)
        await d.open()
        _, host = await asyncio.to_thread(fake_modem.recvfrom, 2048)  # the link's registration datagram
        me = d.link.mac
        head = me + bytes.fromhex("020000000099") + b"\x88\xe1"
        bad = [
            me + b"\x02\x00",  # 14 bytes is the minimum Ethernet header: this is shorter
            head + b"\x01\x64",  # a HomePlug frame cut inside its MME header
            head + b"\x01\x10\x62\x00\x00" + bytes(41),  # unknown MMTYPE 0x6210
            head + b"\x07\x64\x60\x00\x00" + bytes(41),  # MMV 7
            Frame(dst=me, src=bytes.fromhex("020000000099"), body=SlacMatchReq(
                run_id=bytes(8), pev_mac=bytes(6), evse_mac=me)).pack(),  # CM_SLAC_MATCH.REQ while IDLE
        ]
        before = len(slac_log.events("slac frame ignored"))
        for frame in bad:
            fake_modem.sendto(frame, host)
        await asyncio.sleep(0.3)
        lines = slac_log.events("slac frame ignored")[before:]
        assert len(lines) == 5
        whys = " ".join(str(getattr(r, "fields", {}).get("why")) for r in lines)
        for word in ("Ethernet header", "MME header", "unknown MMTYPE", "MMV", "not expected in this state"):
            assert word in whys
        assert d._rx_task is not None and not d._rx_task.done()
        # still working: a management request is answered by the (fake) modem and picked up
        reply_task = asyncio.create_task(d.request(
            vendor_frame(LOCAL_MODEM, me, LinkStatusReq()),
            lambda f: isinstance(f.body, LinkStatusCnf), timeout=2))
        req, _ = await asyncio.to_thread(fake_modem.recvfrom, 2048)
        assert isinstance(parse_frame(req).body, LinkStatusReq)
        fake_modem.sendto(vendor_frame(me, LOCAL_MODEM, LinkStatusCnf(link_status=1)).pack(), host)
        reply = await reply_task
        assert reply is not None and isinstance(reply.body, LinkStatusCnf) and reply.body.up


@sync
async def test_data_frames_cross_only_between_modems_of_one_network() -> None:
    vm = await medium(5, 5)
    a = UdpLink("127.0.0.1", vm.ports[0].port, ethertype=None)  # type: ignore[union-attr]
    b = UdpLink("127.0.0.1", vm.ports[1].port, ethertype=None)  # type: ignore[union-attr]
    await a.open()
    await b.open()
    try:
        ipv6 = b.mac + a.mac + b"\x86\xdd" + b"\x60" + bytes(60)

        async def next_ipv6(link: UdpLink, timeout: float) -> bytes | None:
            try:
                while True:
                    frame = await asyncio.wait_for(link.recv(), timeout)
                    if frame[12:14] == b"\x86\xdd":
                        return frame
            except TimeoutError:
                return None

        a.send(ipv6)
        assert await next_ipv6(b, 0.3) is None  # different NIDs: nothing crosses
        nmk = bytes(range(16))
        for link in (a, b):
            link.send(Frame(dst=LOCAL_MODEM, src=link.mac, body=SetKeyReq(nid=nid_from_nmk(nmk), new_key=nmk)).pack())
        await asyncio.sleep(0.1)  # longer than the medium's join delay
        a.send(vendor_frame(LOCAL_MODEM, a.mac, LinkStatusReq()).pack())
        statuses = []
        for _ in range(5):
            frame = parse_frame(await asyncio.wait_for(a.recv(), 1))
            if isinstance(frame.body, LinkStatusCnf):
                statuses.append(frame.body.up)
                break
        assert statuses == [True]
        a.send(ipv6)
        assert await next_ipv6(b, 1.0) == ipv6
    finally:
        a.close()
        b.close()
        vm.close()
