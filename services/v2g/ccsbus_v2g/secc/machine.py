"""The SECC state machine of one TCP connection: SessionID and sequence checks, then the handler.

Protocol rules live in the tables of din.py / iso2.py; this module only applies them. It is pure:
`handle(tree, inputs, now)` returns a Step and never blocks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

from . import common, din, iso2
from .common import FAILED_SEQUENCE, FAILED_UNKNOWN_SESSION, Ctx, RequestError
from .model import EvseInputs, SeccConfig, SeccState, SessionData, Step, Tree

TABLES: dict[str, ModuleType] = {"din": din, "iso2": iso2}


def random_session_id() -> str:
    return os.urandom(8).hex().upper()


class SeccMachine:
    def __init__(self, protocol: str, config: SeccConfig | None = None,
                 new_session_id: Callable[[], str] = random_session_id,
                 paused_session_id: str | None = None) -> None:
        if protocol not in TABLES:
            raise ValueError(f"no SECC table for protocol {protocol!r}")
        self.protocol = protocol
        self.table = TABLES[protocol]
        self.config = config or SeccConfig()
        self.state = SeccState.WAIT_SESSION_SETUP
        self.session = SessionData(protocol, paused_session_id=paused_session_id)
        self._new_session_id = new_session_id

    @property
    def expected(self) -> frozenset[str]:
        allowed: frozenset[str] = self.table.TRANSITIONS[self.state]
        return allowed

    def _ctx(self, inputs: EvseInputs, now: float) -> Ctx:
        return Ctx(self.protocol, self.session, inputs, self.config, self.state, now,
                   self._new_session_id)

    def failed(self, request: str, code: str, inputs: EvseInputs, now: float,
               error: str) -> Step:
        """The response to `request` with a FAILED code and all mandatory fields."""
        name, builder = self.table.RESPONSES[request]
        ctx = self._ctx(inputs, now)
        step = common.step(ctx, request, name, builder(ctx, code), SeccState.SESSION_STOPPED,
                           error=error)
        self.state = step.state
        return step

    def handle(self, tree: Tree, inputs: EvseInputs, now: float) -> Step:
        request, body, session_id = _split(tree)
        if request not in self.table.RESPONSES:
            self.state = SeccState.SESSION_STOPPED
            return Step(request, "", None, self.state, close=True,
                        error=f"{request} is not supported by this SECC ({self.protocol})")
        if request == "SessionSetupReq" and self.state is SeccState.WAIT_SESSION_SETUP:
            if session_id and session_id == self.session.paused_session_id:
                self.session.session_id = session_id
        elif request not in self.expected:
            return self.failed(request, FAILED_SEQUENCE, inputs, now,
                               f"{request} not expected in state {self.state.value}")
        elif session_id != self.session.session_id:
            return self.failed(request, FAILED_UNKNOWN_SESSION, inputs, now,
                               f"SessionID {session_id} is not ours ({self.session.session_id})")
        ctx = self._ctx(inputs, now)
        try:
            step = self.table.HANDLERS[request](ctx, body)
        except RequestError as exc:
            return self.failed(request, "FAILED", inputs, now, f"{request}: {exc}")
        self.state = step.state
        return step


def _split(tree: Tree) -> tuple[str, dict[str, Any], str]:
    """(request name, body, header SessionID) of a decoded V2G_Message."""
    try:
        msg = tree["V2G_Message"]
        (name, body), = msg["Body"].items()
        session_id = str(msg["Header"]["SessionID"]).upper()
    except (KeyError, TypeError, ValueError, AttributeError):
        raise RequestError("not a V2G_Message with one body element") from None
    return name, body if isinstance(body, dict) else {}, session_id


def message_name(tree: Tree) -> str:
    """The body element's name of a V2G_Message or the root name of a handshake message."""
    try:
        return _split(tree)[0]
    except RequestError:
        return next(iter(tree), "?")
