"""What SmartEVSE is told: the car's values collected from the topics, and the request they make.

Pure functions; the service feeds topics in and sends what `target()` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

EVCCID_MAX = 32  # SmartEVSE's limit for the evccid parameter


class Variant(Enum):
    V3 = "v3"  # POST /ev_state?current_soc=..&full_soc=..&energy_capacity=..&energy_request=..&evccid=..
    V4 = "v4"  # firmware that reads the values itself: GET /ev_state?update_ev_state=1


@dataclass(frozen=True)
class EvValues:
    """None = unknown (sent as -1)."""

    current_soc: float | None = None  # %
    full_soc: float | None = None  # %
    energy_capacity: float | None = None  # Wh
    energy_request: float | None = None  # Wh
    evccid: str | None = None


@dataclass(frozen=True)
class Target:
    """One HTTP request: method and full URL (parameters in the query string, no body)."""

    method: str
    url: str

    @property
    def query(self) -> str:
        return urlsplit(self.url).query


def _known(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if value < 0 else float(value)


def collect(values: EvValues, path: str, value: Any) -> EvValues:
    """The values after one topic message (`soc`, `battery_capacity`, `evccid`, `v2g/session`)."""
    match path:
        case "soc":
            return replace(values, current_soc=_known(value))
        case "battery_capacity":
            return replace(values, energy_capacity=_known(value))
        case "evccid":
            return replace(values, evccid=str(value).strip() or None)
        case "v2g/session" if isinstance(value, dict):
            # energies are optional fields of the session (Wh); absent keys leave what we know
            updates: dict[str, Any] = {}
            for key in ("full_soc", "energy_capacity", "energy_request"):
                if key in value:
                    updates[key] = _known(value[key])
            if value.get("soc") is not None:
                updates["current_soc"] = _known(value["soc"])
            if value.get("evccid"):
                updates["evccid"] = str(value["evccid"])
            return replace(values, **updates)
    return values


def _number(value: float | None) -> int:
    return -1 if value is None else round(value)


def target(endpoint: str, variant: Variant, values: EvValues,
           capacity_fallback: float = -1) -> Target | None:
    """The request for these values, or None while there is nothing SmartEVSE would accept.

    SmartEVSE accepts current_soc only in 0..100, so nothing is sent before the car reported one.
    """
    soc = values.current_soc
    if soc is None or not 0 <= soc <= 100:
        return None
    parts = urlsplit(endpoint)
    if variant is Variant.V4:
        return Target("GET", urlunsplit(parts._replace(query="update_ev_state=1")))
    capacity = values.energy_capacity
    if capacity is None and capacity_fallback >= 0:
        capacity = capacity_fallback
    params: list[tuple[str, str | int]] = [
        ("current_soc", _number(soc)),
        ("full_soc", _number(values.full_soc)),
        ("energy_capacity", _number(capacity)),
        ("energy_request", _number(values.energy_request)),
    ]
    if values.evccid and len(values.evccid) <= EVCCID_MAX:
        params.append(("evccid", values.evccid))
    return Target("POST", urlunsplit(parts._replace(query=urlencode(params))))
