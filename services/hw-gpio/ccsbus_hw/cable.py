"""The simulated cable: what the other stack's sim power stage shows, read from its topics.

The peer lives under another base topic (e.g. `ccsbus/pev`), which `Bus.subscribe` cannot reach (it
prefixes its own base), and a second `Bus` would put this process's last will on the peer's
`hw/status`. So this is a read-only MQTT client: no will, no publishes, payloads validated against
the same contract entries as everywhere else.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ccsbus.config import BrokerConfig
from ccsbus.contract import PayloadError, load_contract
from ccsbus.log import get_logger

from .plant import PeerView
from .safety import Side

_ids = itertools.count(1)


def peer_view_from(side: Side, hw_state: dict[str, Any] | None, cp_state: dict[str, Any] | None,
                   online: bool = True) -> PeerView:
    """Map the peer's published state to what this side of the cable sees (pure)."""
    if hw_state is None or not online:
        return PeerView(cp_state="A", present=False)  # no peer on the cable: unplugged
    closed = hw_state.get("contactors") in ("closed", "opening")
    if side is Side.EVSE:  # the peer is the car: its battery is behind its contactors
        voltage = hw_state.get("battery_voltage", hw_state.get("inlet_voltage", 0.0))
        return PeerView(contactors_closed=closed, voltage=float(voltage or 0.0),
                        cp_state=str((cp_state or {}).get("state", "A")))
    voltage = hw_state.get("supply_voltage", hw_state.get("present_voltage", 0.0))
    duty = (cp_state or {}).get("duty", 100.0)
    return PeerView(contactors_closed=closed, voltage=float(voltage or 0.0),
                    current=float(hw_state.get("present_current", 0.0) or 0.0),
                    duty=float(duty if duty is not None else 100.0))


class PeerLink:
    """Follows `<peer_base>/hw/state`, `cp/state` and `hw/status`; `view()` gives the cable's far end."""

    def __init__(self, side: Side, broker: BrokerConfig, peer_base: str,
                 stale_after: float = 3.0) -> None:
        self.side = side
        self.base = peer_base.rstrip("/")
        self.stale_after = stale_after
        self.log = get_logger("hw.cable")
        contract = load_contract()
        self._hw_payload = contract.find("hw/state").payload
        self._cp_payload = contract.find("cp/state").payload
        self._lock = threading.Lock()
        self._hw: dict[str, Any] | None = None
        self._cp: dict[str, Any] | None = None
        self._online = True
        self._last = 0.0
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"ccsbus-cable-{os.getpid()}-{next(_ids)}",
                                   protocol=mqtt.MQTTv311, clean_session=True)
        self._client.reconnect_delay_set(1, max(1, int(broker.reconnect_max)))
        if broker.username:
            self._client.username_pw_set(broker.username, broker.password or None)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._broker = broker

    def start(self) -> None:
        self._client.connect_async(self._broker.host, self._broker.port,
                                   keepalive=self._broker.keepalive)
        self._client.loop_start()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            return
        for path in ("hw/state", "cp/state", "hw/status"):
            client.subscribe(f"{self.base}/{path}", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.feed(msg.topic.removeprefix(self.base + "/"), bytes(msg.payload), time.monotonic())

    def feed(self, path: str, payload: bytes, now: float) -> None:
        try:
            if path == "hw/state":
                value = self._hw_payload.decode(payload)
                with self._lock:
                    self._hw, self._last = value, now
            elif path == "cp/state":
                value = self._cp_payload.decode(payload)
                with self._lock:
                    self._cp = value
            elif path == "hw/status":
                with self._lock:
                    self._online = payload.strip() == b"online"
        except PayloadError as exc:
            self.log.warning("peer payload rejected", topic=f"{self.base}/{path}", reason=str(exc))

    def view(self, now: float) -> PeerView:
        with self._lock:
            fresh = self._hw is not None and now - self._last <= self.stale_after
            return peer_view_from(self.side, self._hw if fresh else None, self._cp,
                                  self._online)
