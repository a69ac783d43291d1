"""The car side (EVCC) of DIN 70121 / ISO 15118-2 DC charging: pure state machine and settings."""

from .actions import (
    Action,
    AwaitContactors,
    AwaitCurrentBelow,
    Finished,
    PublishCharger,
    SetCp,
    SetLock,
    SetRelay,
)
from .machine import DIALECTS, EvccMachine, EvccState, EvInputs, Step, safe_shutdown
from .settings import EvccSettings, EvccTimers

__all__ = [
    "DIALECTS",
    "Action",
    "AwaitContactors",
    "AwaitCurrentBelow",
    "EvInputs",
    "EvccMachine",
    "EvccSettings",
    "EvccState",
    "EvccTimers",
    "Finished",
    "PublishCharger",
    "SetCp",
    "SetLock",
    "SetRelay",
    "Step",
    "safe_shutdown",
]
