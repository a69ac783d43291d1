"""The forwarder against a real local SmartEVSE stand-in: coalescing, one request in flight, back-off,
recovery after the wallbox was down or slow."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from ccsbus.log import get_logger
from ccsbus_soc import http
from ccsbus_soc.forwarder import Forwarder, ForwardPolicy
from ccsbus_soc.values import EvValues, Variant, target


class Client:
    """The real HTTP client, watched: how many exchanges overlap (must never exceed one)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.active = 0
        self.max_active = 0
        self.attempts: list[float] = []

    async def send(self, method: str, url: str) -> http.Response:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.attempts.append(time.monotonic())
        try:
            return await http.request(method, url, self.timeout)
        finally:
            self.active -= 1


def make(url: str, client: Client, policy: ForwardPolicy) -> tuple[Forwarder, list[dict[str, Any]]]:
    states: list[dict[str, Any]] = []
    refused: list[str] = []
    forwarder = Forwarder(client.send, policy, get_logger("soc-test"), states.append, url, "v3",
                          on_refused=refused.append)
    forwarder.refused = refused  # type: ignore[attr-defined]
    return forwarder, states


def soc_target(url: str, soc: float, **kw: Any) -> Any:
    return target(url, Variant.V3, EvValues(current_soc=soc, **kw))


async def until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.01)


def test_burst_of_updates_coalesces_and_latest_wins(fake_factory: Any) -> None:
    wallbox = fake_factory(delay=0.2)
    client = Client(timeout=2.0)
    forwarder, states = make(wallbox.url, client, ForwardPolicy(0.05, 1.0, 0.0))

    async def scenario() -> None:
        stopping = asyncio.Event()
        worker = asyncio.create_task(forwarder.run(stopping))
        for soc in range(10, 60):  # 50 updates within half a second
            forwarder.offer(soc_target(wallbox.url, soc, energy_capacity=50000))
            await asyncio.sleep(0.01)
        await until(lambda: forwarder.done is not None and "current_soc=59" in forwarder.done.url, 5)
        stopping.set()
        await worker

    asyncio.run(scenario())
    assert wallbox.max_in_flight == 1 and client.max_active == 1
    assert 2 <= len(wallbox.requests) <= 5  # 0.5 s of updates against 0.2 s answers
    assert wallbox.requests[-1].params["current_soc"] == "59"
    assert wallbox.state.current_soc == 59 and wallbox.state.energy_capacity == 50000
    assert states[-1]["last_status"] == 200 and states[-1]["failures"] == 0
    assert '"current_soc": 59' in states[-1]["last_response"]


def test_same_values_are_not_sent_twice(smartevse: Any) -> None:
    client = Client(timeout=2.0)
    forwarder, _ = make(smartevse.url, client, ForwardPolicy(0.05, 1.0, 0.0))

    async def scenario() -> None:
        stopping = asyncio.Event()
        worker = asyncio.create_task(forwarder.run(stopping))
        forwarder.offer(soc_target(smartevse.url, 30))
        await until(lambda: forwarder.successes == 1, 3)
        forwarder.offer(soc_target(smartevse.url, 30))
        await asyncio.sleep(0.3)
        forwarder.offer(soc_target(smartevse.url, 31))
        await until(lambda: forwarder.successes == 2, 3)
        stopping.set()
        await worker

    asyncio.run(scenario())
    assert [r.params["current_soc"] for r in smartevse.requests] == ["30", "31"]


def test_wallbox_down_then_up_backs_off_and_delivers_the_latest(fake_factory: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ev_state"
    client = Client(timeout=1.0)
    forwarder, states = make(url, client, ForwardPolicy(0.1, 0.4, 0.0))
    holder: dict[str, Any] = {}

    async def scenario() -> None:
        stopping = asyncio.Event()
        worker = asyncio.create_task(forwarder.run(stopping))
        forwarder.offer(soc_target(url, 20))
        await until(lambda: forwarder.failures >= 4, 5)
        forwarder.offer(soc_target(url, 21, full_soc=90))  # while down: the latest must win
        holder["fake"] = await asyncio.to_thread(fake_factory, port)
        await until(lambda: forwarder.successes == 1, 5)
        stopping.set()
        await worker

    asyncio.run(scenario())
    gaps = [b - a for a, b in zip(client.attempts, client.attempts[1:], strict=False)]
    # back-off doubles from 0.1 s up to the 0.4 s ceiling
    assert 0.08 <= gaps[0] <= 0.5 and 0.18 <= gaps[1] <= 0.7 and all(g <= 1.0 for g in gaps)
    assert max(gaps[2:4]) >= 0.35
    fake = holder["fake"]
    assert [r.params["current_soc"] for r in fake.requests] == ["21"]
    assert fake.requests[0].params["full_soc"] == "90"
    assert any("connection failed" in (s["last_error"] or "") for s in states)
    assert states[-1]["failures"] == 0 and client.max_active == 1


def test_slow_wallbox_times_out_and_is_retried_without_overlap(fake_factory: Any) -> None:
    wallbox = fake_factory(delay=0.6)
    client = Client(timeout=0.2)
    forwarder, states = make(wallbox.url, client, ForwardPolicy(0.1, 0.2, 0.0))

    async def scenario() -> None:
        stopping = asyncio.Event()
        worker = asyncio.create_task(forwarder.run(stopping))
        forwarder.offer(soc_target(wallbox.url, 70))
        await until(lambda: forwarder.failures >= 2, 5)
        wallbox.delay = 0.0  # the wallbox recovers
        forwarder.offer(soc_target(wallbox.url, 71))
        await until(lambda: forwarder.successes == 1, 5)
        stopping.set()
        await worker

    asyncio.run(scenario())
    assert client.max_active == 1
    assert any("within 0.2 s" in (s["last_error"] or "") for s in states)
    assert wallbox.state.current_soc == 71


def test_refused_values_are_reported_and_not_retried(smartevse: Any) -> None:
    client = Client(timeout=1.0)
    forwarder, states = make(smartevse.url, client, ForwardPolicy(0.05, 0.1, 0.0))
    bad = soc_target(smartevse.url, 50)
    bad = type(bad)(bad.method, bad.url + "&evccid=" + "X" * 40)  # SmartEVSE refuses > 32 chars

    async def scenario() -> None:
        stopping = asyncio.Event()
        worker = asyncio.create_task(forwarder.run(stopping))
        forwarder.offer(bad)
        await until(lambda: forwarder.requests == 1 and not forwarder.in_flight, 3)
        await asyncio.sleep(0.4)
        stopping.set()
        await worker

    asyncio.run(scenario())
    assert len(smartevse.requests) == 1
    assert states[-1]["last_status"] == 400
    assert forwarder.refused and "HTTP 400" in forwarder.refused[0]  # type: ignore[attr-defined]
