"""Deterministic, socket-free run of SLAC machines on the virtual medium with a simulated clock.

Every machine sits behind one port of a `vmodem.Medium`; frames and timers are processed in time
order. Used by the state-machine tests to play whole matchings (several EVSEs, lost frames, rogue
senders) in microseconds and reproducibly.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from .fsm import (
    Action,
    CancelTimer,
    Context,
    Event,
    Expired,
    Failed,
    LinkDown,
    LinkUp,
    Machine,
    Received,
    Send,
    StartTimer,
)
from .mme import ParseError, parse_frame
from .settings import SlacSettings
from .vmodem import Medium, PortConfig

FRAME_DELAY = 0.0005  # seconds a frame takes through the simulated medium


@dataclass
class Station:
    index: int
    machine: Machine
    actions: list[Action] = field(default_factory=list)

    @property
    def ups(self) -> list[LinkUp]:
        return [a for a in self.actions if isinstance(a, LinkUp)]

    @property
    def downs(self) -> list[LinkDown]:
        return [a for a in self.actions if isinstance(a, LinkDown)]

    @property
    def failures(self) -> list[Failed]:
        return [a for a in self.actions if isinstance(a, Failed)]


class SimLoop:
    def __init__(self, ports: list[PortConfig], join_delay: float = 0.05) -> None:
        self.now = 0.0
        self.medium = Medium(ports, join_delay=join_delay, clock=lambda: self.now)
        self.stations: dict[int, Station] = {}
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._timers: dict[tuple[int, str], int] = {}
        self.drop: Callable[[int, bytes], bool] = lambda port, frame: False  # fault injection
        self.sent: list[tuple[float, int, bytes]] = []

    def add(self, index: int, role: str, settings: SlacSettings, host_mac: bytes,
            random_bytes: Callable[[int], bytes] | None = None) -> Station:
        from .driver import make_machine

        ctx = Context(settings=settings, host_mac=host_mac, modem_mac=self.medium.modems[index].mac,
                      clock=lambda: self.now)
        if random_bytes is not None:
            ctx.random_bytes = random_bytes
        station = Station(index, make_machine(role, ctx))
        self.stations[index] = station
        self.medium.modems[index].hosts.add(host_mac)
        return station

    def at(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (self.now + delay, next(self._seq), fn))

    def feed(self, index: int, event: Event) -> None:
        station = self.stations[index]
        for action in station.machine.handle(event):
            station.actions.append(action)
            self._apply(index, action)

    def inject(self, index: int, frame: bytes) -> None:
        """A frame from the host behind port `index` (which may have no machine: a rogue sender)."""
        self.sent.append((self.now, index, frame))
        for target, data in self.medium.from_host(index, frame):
            if self.drop(target, data):
                continue
            self.at(FRAME_DELAY, self._delivery(target, data))

    def _delivery(self, index: int, data: bytes) -> Callable[[], None]:
        return lambda: self._deliver(index, data)

    def _deliver(self, index: int, data: bytes) -> None:
        if index not in self.stations:
            return
        try:
            frame = parse_frame(data)
        except ParseError:
            return
        self.feed(index, Received(frame))

    def _apply(self, index: int, action: Action) -> None:
        match action:
            case Send(frame):
                self.inject(index, frame.pack())
            case StartTimer(name, seconds):
                token = next(self._seq)
                self._timers[(index, name)] = token
                self.at(seconds, lambda: self._expire(index, name, token))
            case CancelTimer(name):
                self._timers.pop((index, name), None)

    def _expire(self, index: int, name: str, token: int) -> None:
        if self._timers.get((index, name)) != token:
            return  # cancelled or restarted
        del self._timers[(index, name)]
        self.feed(index, Expired(name))

    def run(self, until: float, stop: Callable[[], bool] = lambda: False) -> None:
        while self._queue and self._queue[0][0] <= until and not stop():
            when, _, fn = heapq.heappop(self._queue)
            self.now = when
            fn()
        if not stop():
            self.now = max(self.now, until)
