"""The v2g service as `ccsbus run v2g` runs it: settings from the config section, link waiting."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from typing import Any

import pytest

from ccsbus.config import ConfigError, load_config
from ccsbus.lifecycle import serve
from ccsbus.testing.fixtures import Mosquitto
from ccsbus_v2g import sdp, v2gtp
from ccsbus_v2g.codec import CodecMode
from ccsbus_v2g.service import SPEC, V2gSettings


def stack_for(broker: Mosquitto, tmp_path: Any, v2g: dict[str, Any]) -> Any:
    path = tmp_path / "ccsbus.yaml"
    path.write_text(json.dumps({"role": "EVSE", "broker": {"url": broker.url, "base_topic": "t_run"},
                                "v2g": v2g}))
    return load_config(path, env={})


def test_settings_parse_and_reject(tmp_path: Any, mosquitto: Mosquitto) -> None:
    stack = stack_for(mosquitto, tmp_path, {
        "interface": "lo", "codec": "inprocess", "fault": 9, "protocols": ["din"],
        "timers": {"V2G_SECC_Sequence_Timeout": 5}, "evcc": {"sdp_target": "::1"}})
    settings = stack.section("v2g", V2gSettings)
    assert settings.codec is CodecMode.INPROCESS and settings.fault == "9"
    assert settings.timers.V2G_SECC_Sequence_Timeout == 5.0 and settings.evcc.sdp_target == "::1"
    with pytest.raises(ConfigError, match="v2g.timers.V2G_SECC_Sequence_Timeout"):
        stack_for(mosquitto, tmp_path, {"timers": {"V2G_SECC_Sequence_Timeout": -1}}).section(
            "v2g", V2gSettings)
    with pytest.raises(ConfigError, match="v2g.codec"):
        stack_for(mosquitto, tmp_path, {"codec": "grpc"}).section("v2g", V2gSettings)
    for key, value in (("fault", "nonsense"), ("protocols", ["iso20"]), ("energy_modes", ["AC"])):
        with pytest.raises(ConfigError, match=f"v2g.{key}"):
            stack_for(mosquitto, tmp_path, {key: value}).section("v2g", V2gSettings)


async def _sdp_answer(port: int, timeout: float) -> bytes | None:
    loop = asyncio.get_running_loop()
    import socket

    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.sendto(sdp.request_frame(sdp.SdpRequest()), ("::1", port))
        return await asyncio.wait_for(loop.sock_recv(sock, 100), timeout)
    except TimeoutError:
        return None
    finally:
        sock.close()


def test_servers_follow_slac_link(tmp_path: Any, mosquitto: Mosquitto, probe_factory: Any) -> None:
    """SDP answers only while slac/link is up; the interface comes from the link event."""
    pytest.importorskip("ccsbus_exi", reason="the EXI binding ccsbus_exi is not built")
    from ccsbus.broker import free_port

    udp = free_port()
    stack = stack_for(mosquitto, tmp_path, {"codec": "inprocess", "sdp_port": udp,
                                            "standalone": True})
    settings = replace(stack.section("v2g", V2gSettings), sdp_port=udp)
    probe = probe_factory(mosquitto.port)
    probe.subscribe("t_run/#")

    async def scenario() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(serve(SPEC, stack, settings, stopping))
        for _ in range(500):  # the probe must not block the loop the service runs on
            if any(t == "t_run/v2g/status" and p == b"online" for t, p, _ in list(probe.seen)):
                break
            await asyncio.sleep(0.02)
        assert await _sdp_answer(udp, 0.5) is None  # no link yet, no SDP
        probe.publish("t_run/slac/link", json.dumps({"link": "up", "interface": "lo",
                                                     "time": time.time()}), retain=True)
        answer = None
        for _ in range(20):
            answer = await _sdp_answer(udp, 0.25)
            if answer:
                break
        assert answer is not None, "no SDP answer with the link up"
        _, payload = v2gtp.decode_datagram(answer)
        assert str(sdp.parse_response(payload).address) == "::1"
        probe.publish("t_run/slac/link", json.dumps({"link": "down", "time": time.time()}),
                      retain=True)
        await asyncio.sleep(0.5)
        assert await _sdp_answer(udp, 0.5) is None  # servers closed with the link
        stopping.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    probe.wait_payload("t_run/fsm_state", b"Idle")
