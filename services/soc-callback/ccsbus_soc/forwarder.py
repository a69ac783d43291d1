"""Send the latest values to SmartEVSE: one request at a time, latest values win, backoff on failure.

A single worker task owns the HTTP exchange, so two requests can never be in flight. New values only
replace `latest`; the worker picks them up when the current request (or back-off) is over, so a burst
of SoC updates during CurrentDemand costs one request, not one per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ccsbus.log import EventLog

from .http import HttpError, Response
from .values import Target

Send = Callable[[str, str], Awaitable[Response]]


@dataclass(frozen=True)
class ForwardPolicy:
    retry_min: float = 1.0  # first back-off after a failure, seconds
    retry_max: float = 60.0  # longest back-off
    min_interval: float = 1.0  # at least this long between two requests


class Forwarder:
    def __init__(self, send: Send, policy: ForwardPolicy, log: EventLog,
                 on_state: Callable[[dict[str, Any]], None], endpoint: str, variant: str,
                 on_refused: Callable[[str], None] = lambda reason: None) -> None:
        self.send = send
        self.policy = policy
        self.log = log
        self.on_state = on_state
        self.on_refused = on_refused
        self.latest: Target | None = None
        self.done: Target | None = None  # the last target SmartEVSE answered (2xx or a 4xx verdict)
        self.in_flight = False
        self.failures = 0
        self.requests = 0
        self.successes = 0
        self.last_request: str | None = None
        self.last_status: int | None = None
        self.last_error: str | None = None
        self.last_response: str | None = None
        self.endpoint = endpoint
        self.variant = variant
        self._wake = asyncio.Event()

    def offer(self, target: Target | None) -> None:
        """New values: remember them; the worker sends them when it is free."""
        if target is None or target == self.latest:
            return
        self.latest = target
        if target != self.done:
            self._wake.set()

    def state(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "variant": self.variant, "last_request": self.last_request,
                "last_status": self.last_status, "last_error": self.last_error,
                "last_response": self.last_response, "failures": self.failures,
                "requests": self.requests, "successes": self.successes, "in_flight": self.in_flight,
                "time": time.time()}

    async def run(self, stopping: asyncio.Event) -> None:
        backoff = self.policy.retry_min
        while not stopping.is_set():
            if not await _wait_either(self._wake, stopping, None):
                return
            self._wake.clear()
            target = self.latest
            if target is None or target == self.done:
                continue
            ok = await self._attempt(target)
            if ok:
                backoff = self.policy.retry_min
                pause = self.policy.min_interval
            else:
                pause = backoff
                backoff = min(backoff * 2, self.policy.retry_max)
                self.log.info("retrying later", seconds=pause, failures=self.failures)
            # a pause that new values cannot cut short: that is what keeps the rate bounded
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), pause)
            if self.latest is not None and self.latest != self.done:
                self._wake.set()

    async def _attempt(self, target: Target) -> bool:
        """True when SmartEVSE gave its verdict on these values (no retry of the same values)."""
        self.in_flight = True
        self.requests += 1
        self.last_request = f"{target.method} {target.url}"
        self.on_state(self.state())
        response: Response | None = None
        try:
            response = await self.send(target.method, target.url)
        except HttpError as exc:
            self.last_error = str(exc)
        finally:
            self.in_flight = False
        verdict = self._judge(target, response)
        self.on_state(self.state())
        return verdict

    def _judge(self, target: Target, response: Response | None) -> bool:
        if response is None:
            self.failures += 1
            self.last_status = None
            self.log.warning("SmartEVSE request failed", url=target.url, reason=self.last_error,
                             failures=self.failures)
            return False
        self.last_status = response.status
        self.last_response = response.body[:200].decode("utf-8", "replace")
        if 200 <= response.status < 300:
            self.failures = 0
            self.successes += 1
            self.last_error = None
            self.done = target
            self.log.info("SmartEVSE updated", query=target.query, status=response.status)
            return True
        self.failures += 1
        self.last_error = f"HTTP {response.status} {response.reason}".strip()
        if 400 <= response.status < 500:
            # a verdict on the values themselves: sending them again would get the same answer
            self.done = target
            self.log.warning("SmartEVSE refused the values", query=target.query,
                             status=response.status, body=self.last_response)
            self.on_refused(f"SmartEVSE refused {target.query}: {self.last_error}")
            return True
        self.log.warning("SmartEVSE error", status=response.status, failures=self.failures)
        return False


async def _wait_either(first: asyncio.Event, stopping: asyncio.Event, timeout: float | None) -> bool:
    """Wait for `first`; False when `stopping` came first."""
    waits = {asyncio.ensure_future(first.wait()), asyncio.ensure_future(stopping.wait())}
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
    return not stopping.is_set()
