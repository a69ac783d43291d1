"""The CP trigger: a new session only on the edge to B/C/D with 5 % duty."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from ccsbus.log import get_logger
from ccsbus_slac.service import SlacService
from ccsbus_slac.settings import SlacSettings


class FakeBus:
    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []

    def publish(self, path: str, value: Any) -> None:
        self.published.append((path, value))

    def publish_error(self, reason: str) -> None:
        self.published.append(("slac/error", reason))


def service(role: str = "EVSE") -> SlacService:
    ctx = SimpleNamespace(settings=SlacSettings(), bus=FakeBus(), log=get_logger("slac"), role=role,
                          stopping=asyncio.Event())
    return SlacService(ctx)  # type: ignore[arg-type]


def starts(svc: SlacService, *cp: tuple[str, float | None]) -> list[bool]:
    out = []
    for state, duty in cp:
        svc.pending_start = None
        value: dict[str, Any] = {"state": state, "time": 0}
        if duty is not None:
            value["duty"] = duty
        svc.on_cp("cp/state", value)
        out.append(svc.pending_start is not None)
    return out


def test_edge_to_five_percent_starts_once() -> None:
    svc = service()
    assert starts(svc, ("A", 100), ("B", 100), ("B", 5), ("B", 5), ("C", 5), ("B", None), ("C", 5)) == [
        False, False, True, False, False, False, False]


def test_five_percent_withdrawn_and_given_again_is_a_new_request() -> None:
    svc = service()
    assert starts(svc, ("B", 5), ("B", 100), ("B", 5)) == [True, False, True]


def test_unplug_rearms_and_cancels_a_pending_start() -> None:
    svc = service()
    assert starts(svc, ("B", 5), ("A", 0), ("B", 5)) == [True, False, True]
    svc.on_cp("cp/state", {"state": "A", "time": 0})
    assert svc.pending_start is None


def test_listen_role_ignores_cp_and_bad_payloads_do_not_start() -> None:
    assert starts(service("LISTEN"), ("B", 5)) == [False]
    svc = service()
    svc.on_cp("cp/state", "B")
    svc.on_cp("cp/state", {"state": "B", "duty": "five"})
    assert svc.pending_start is None
