"""Hardware backends behind one interface (`HwBackend`), chosen by `hw.backend`."""

from __future__ import annotations

from ..safety import Side
from ..settings import Backend, HwSettings
from .base import HwBackend
from .sim import PeerSource


def make_backend(settings: HwSettings, side: Side, peer: PeerSource | None = None) -> HwBackend:
    match settings.backend:
        case Backend.SIM:
            from .sim import SimBackend

            return SimBackend(side, settings.sim, settings.safety.precharge_delta, peer)
        case Backend.BLINKA:
            from .blinka import BlinkaBackend

            return BlinkaBackend(settings.pins)
        case Backend.DIETER:
            from .dieter import DieterBackend

            return DieterBackend(settings.serial_port, settings.baudrate,
                                 settings.adc_volts_per_count, settings.relay2)
        case Backend.CELERON55:
            from .celeron55 import Celeron55Backend

            return Celeron55Backend(settings.serial_port, settings.baudrate)
        case Backend.MQTT:
            from .mqtt import MqttBackend

            return MqttBackend(side)
    raise AssertionError(settings.backend)  # pragma: no cover - the enum is exhaustive
