"""The SLAC service on a real broker: CP trigger -> matching over the virtual modem -> slac/link."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

from ccsbus.config import Role, load_config
from ccsbus.lifecycle import serve
from ccsbus.testing.fixtures import Mosquitto, Probe
from ccsbus_slac.service import SPEC
from ccsbus_slac.settings import SlacSettings
from ccsbus_slac.vmodem import PortConfig, VirtualModem


def stack_for(url: str, base: str, role: Role) -> Any:
    stack = load_config(env={})
    return dataclasses.replace(stack, role=role, broker=dataclasses.replace(stack.broker, url=url, base_topic=base))


def payload_is(topic: str, **want: Any) -> Callable[[str, bytes], bool]:
    def check(t: str, p: bytes) -> bool:
        if t != topic:
            return False
        try:
            value = json.loads(p)
        except ValueError:
            return False
        return all(value.get(k) == v for k, v in want.items())

    return check


def cp(state: str, duty: float) -> str:
    return json.dumps({"state": state, "duty": duty, "time": time.time()})


def test_cp_trigger_matches_two_stacks_and_publishes_link(mosquitto: Mosquitto,
                                                          probe_factory: Callable[[int], Probe]) -> None:
    probe = probe_factory(mosquitto.port)
    probe.subscribe("ccsbus/+/slac/#")

    async def main() -> None:
        vm = VirtualModem([PortConfig("udp", "127.0.0.1:0", atten=4), PortConfig("udp", "127.0.0.1:0", atten=6)])
        await vm.open()
        stopping = asyncio.Event()
        tasks = []
        for index, (base, role) in enumerate([("ccsbus/evse", Role.EVSE), ("ccsbus/pev", Role.PEV)]):
            settings = SlacSettings(link="udp", udp_port=vm.ports[index].port)  # type: ignore[union-attr]
            tasks.append(asyncio.create_task(serve(SPEC, stack_for(mosquitto.url, base, role), settings, stopping)))
        try:
            for base in ("ccsbus/evse", "ccsbus/pev"):
                await asyncio.to_thread(probe.wait_for, payload_is(f"{base}/slac/state", state="IDLE"), 10)
                await asyncio.to_thread(probe.wait_for, payload_is(f"{base}/slac/link", link="down"), 5)
            for base in ("ccsbus/evse", "ccsbus/pev"):
                probe.publish(f"{base}/cp/state", cp("B", 5), retain=True)
            ups = {}
            for base in ("ccsbus/evse", "ccsbus/pev"):
                _, raw = await asyncio.to_thread(probe.wait_for, payload_is(f"{base}/slac/link", link="up"), 10)
                ups[base] = json.loads(raw)
            assert ups["ccsbus/evse"]["nid"] == ups["ccsbus/pev"]["nid"]
            _, raw = await asyncio.to_thread(probe.wait_for, payload_is("ccsbus/pev/slac/state", state="MATCHED"), 5)
            state = json.loads(raw)
            assert state["modem"]["firmware"].startswith("MAC-QCA7000") and state["attenuation_avg"] == 10
            # a broker client sends nonsense: refused on slac/error, the service keeps going
            probe.clear()
            probe.publish("ccsbus/evse/slac/cmd", json.dumps({"cmd": "explode"}))
            await asyncio.to_thread(probe.wait_for, lambda t, p: t == "ccsbus/evse/slac/error", 5)
            # unplug: link down on the charger side
            probe.publish("ccsbus/evse/cp/state", cp("A", 100), retain=True)
            await asyncio.to_thread(probe.wait_for, payload_is("ccsbus/evse/slac/link", link="down"), 5)
            await asyncio.to_thread(probe.wait_for, payload_is("ccsbus/evse/slac/state", state="IDLE"), 5)
            # and plugging in again matches again (the car side restarts by command here)
            probe.clear()
            probe.publish("ccsbus/evse/cp/state", cp("B", 5), retain=True)
            probe.publish("ccsbus/pev/slac/cmd", json.dumps({"cmd": "start"}))
            await asyncio.to_thread(probe.wait_for, payload_is("ccsbus/pev/slac/link", link="up"), 10)
        finally:
            stopping.set()
            await asyncio.gather(*tasks)
            vm.close()

    asyncio.run(main())
    for base in ("ccsbus/evse", "ccsbus/pev"):
        probe.wait_payload(f"{base}/slac/status", b"offline", timeout=5)


def test_no_modem_is_reported_and_the_service_stays_up(mosquitto: Mosquitto,
                                                        probe_factory: Callable[[int], Probe]) -> None:
    probe = probe_factory(mosquitto.port)
    probe.subscribe("ccsbus/x/slac/#")

    async def main() -> None:
        stopping = asyncio.Event()
        settings = SlacSettings(link="udp", udp_port=9, modem_discovery_timeout=0.3, modem_retry_interval=0.5)
        task = asyncio.create_task(serve(SPEC, stack_for(mosquitto.url, "ccsbus/x", Role.EVSE), settings, stopping))
        try:
            t0 = time.monotonic()
            _, raw = await asyncio.to_thread(probe.wait_for, payload_is("ccsbus/x/slac/state", state="NO_MODEM"), 5)
            assert time.monotonic() - t0 < 5
            assert "PIB" in json.loads(raw)["last_error"]
            _, err = await asyncio.to_thread(probe.wait_for, lambda t, p: t == "ccsbus/x/slac/error", 5)
            assert "no HomePlug modem answered" in json.loads(err)["reason"]
            # it keeps looking: a second discovery round happens
            probe.clear()
            await asyncio.to_thread(probe.wait_for, payload_is("ccsbus/x/slac/state", state="DISCOVERY"), 5)
            assert not task.done()
        finally:
            stopping.set()
            await task

    asyncio.run(main())


def test_listen_stack_observes_the_match_and_joins(mosquitto: Mosquitto,
                                                    probe_factory: Callable[[int], Probe]) -> None:
    probe = probe_factory(mosquitto.port)
    probe.subscribe("ccsbus/+/slac/#")
    stacks = [("ccsbus/evse", Role.EVSE), ("ccsbus/pev", Role.PEV), ("ccsbus/listen", Role.LISTEN)]

    async def main() -> None:
        vm = VirtualModem([PortConfig("udp", "127.0.0.1:0", atten=5) for _ in stacks])
        await vm.open()
        stopping = asyncio.Event()
        tasks = []
        for index, (base, role) in enumerate(stacks):
            settings = SlacSettings(link="udp", udp_port=vm.ports[index].port)  # type: ignore[union-attr]
            tasks.append(asyncio.create_task(serve(SPEC, stack_for(mosquitto.url, base, role), settings, stopping)))
        try:
            await asyncio.to_thread(probe.wait_for, payload_is("ccsbus/listen/slac/state", state="OBSERVING"), 10)
            for base in ("ccsbus/evse", "ccsbus/pev"):
                await asyncio.to_thread(probe.wait_for, payload_is(f"{base}/slac/state", state="IDLE"), 10)
                probe.publish(f"{base}/cp/state", cp("B", 5), retain=True)
            _, raw = await asyncio.to_thread(
                probe.wait_for, payload_is("ccsbus/listen/slac/observed", message="CM_SLAC_MATCH.CNF"), 10)
            observed = json.loads(raw)
            assert len(observed["fields"]["nmk"]) == 32 and observed["fields"]["run_id"]
            _, up = await asyncio.to_thread(probe.wait_for, payload_is("ccsbus/listen/slac/link", link="up"), 10)
            _, pev_up = await asyncio.to_thread(probe.wait_for, payload_is("ccsbus/pev/slac/link", link="up"), 10)
            assert json.loads(up)["nid"] == json.loads(pev_up)["nid"] == observed["fields"]["nid"]
            messages = {json.loads(p)["message"] for t, p, _ in list(probe.seen)
                        if t == "ccsbus/listen/slac/observed"}
            assert {"CM_SLAC_PARM.REQ", "CM_MNBC_SOUND.IND", "CM_ATTEN_CHAR.IND"} <= messages
        finally:
            stopping.set()
            await asyncio.gather(*tasks)
            vm.close()

    asyncio.run(main())
