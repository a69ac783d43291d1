"""What the EVCC state machine asks the outside world to do, as plain data.

The machine never touches MQTT or sockets: it returns these, and the PEV role carries them out in
the order given (some of them wait for the hardware before the next one runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class SetCp:
    """Ask the CP switch for state B or C (`cpstate`)."""

    state: Literal["B", "C"]


@dataclass(frozen=True)
class SetLock:
    """Lock or unlock the connector (`lock_request`)."""

    value: Literal["lock", "unlock"]


@dataclass(frozen=True)
class SetRelay:
    """Close or open the car's port contactors (`relay_request`)."""

    value: Literal["on", "off"]


@dataclass(frozen=True)
class AwaitCurrentBelow:
    """Wait until the measured current is below `threshold` A, at most `timeout` s."""

    threshold: float
    timeout: float


@dataclass(frozen=True)
class AwaitContactors:
    """Wait until hw/state reports the contactors `value`, at most `timeout` s."""

    value: Literal["open", "closed"]
    timeout: float


@dataclass(frozen=True)
class PublishCharger:
    """The charger's limits and present values as received (`charger_*` topics)."""

    values: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Finished:
    """The session is over: `ok` after SessionStop, else the reason of the safe shutdown."""

    ok: bool
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


Action = SetCp | SetLock | SetRelay | AwaitCurrentBelow | AwaitContactors | PublishCharger | Finished
