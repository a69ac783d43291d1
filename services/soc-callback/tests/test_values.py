"""Collecting the car's values from the topics and the request they make (no sockets)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from ccsbus_soc.values import EvValues, Variant, collect, target

URL = "http://smartevse.local/ev_state"


def params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_nothing_is_sent_before_the_car_reports_a_soc() -> None:
    assert target(URL, Variant.V3, EvValues()) is None
    values = collect(EvValues(), "soc", -1)
    assert values.current_soc is None and target(URL, Variant.V3, values) is None


def test_query_carries_every_parameter_with_minus_one_for_unknown() -> None:
    values = collect(EvValues(), "soc", 57.6)
    values = collect(values, "evccid", "D83ADD123456")
    request = target(URL, Variant.V3, values)
    assert request is not None and request.method == "POST"
    assert urlsplit(request.url).path == "/ev_state"
    assert params(request.url) == {"current_soc": "58", "full_soc": "-1", "energy_capacity": "-1",
                                   "energy_request": "-1", "evccid": "D83ADD123456"}


def test_session_energies_and_capacity_fallback() -> None:
    values = collect(EvValues(), "v2g/session", {
        "role": "EVSE", "state": "CurrentDemand", "time": 1.0, "soc": 40, "full_soc": 95,
        "energy_capacity": 64000, "energy_request": 30500, "evccid": "0011223344AA"})
    assert params(target(URL, Variant.V3, values).url) == {  # type: ignore[union-attr]
        "current_soc": "40", "full_soc": "95", "energy_capacity": "64000",
        "energy_request": "30500", "evccid": "0011223344AA"}
    # the capacity topic overrides; -1 there means unknown and the configured fallback applies
    values = collect(values, "battery_capacity", -1)
    assert params(target(URL, Variant.V3, values, 50000).url)["energy_capacity"] == "50000"  # type: ignore[union-attr]
    assert params(target(URL, Variant.V3, values).url)["energy_capacity"] == "-1"  # type: ignore[union-attr]
    # a session message without energies leaves them as they were
    values = collect(values, "v2g/session", {"role": "EVSE", "state": "x", "time": 2.0, "soc": None})
    assert values.full_soc == 95 and values.current_soc == 40


def test_evccid_longer_than_smartevse_accepts_is_left_out() -> None:
    values = collect(collect(EvValues(), "soc", 10), "evccid", "X" * 33)
    assert "evccid" not in params(target(URL, Variant.V3, values).url)  # type: ignore[union-attr]


def test_v4_asks_the_wallbox_to_read_the_values_itself() -> None:
    values = collect(EvValues(), "soc", 10)
    request = target(URL, Variant.V4, values)
    assert request is not None
    assert (request.method, request.url) == ("GET", URL + "?update_ev_state=1")
