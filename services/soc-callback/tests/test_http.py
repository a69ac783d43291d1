"""The asyncio HTTP client against real local servers: answers, refusals, a refused port, a slow one."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import pytest

from ccsbus_soc import http


def test_post_with_query_gets_the_json_echo(smartevse: Any) -> None:
    url = smartevse.url + "?current_soc=42&full_soc=90&energy_capacity=60000&energy_request=-1"
    response = asyncio.run(http.request("POST", url, 2.0))
    assert response.status == 200
    assert json.loads(response.body)["energy_capacity"] == 60000
    recorded = smartevse.requests[-1]
    assert recorded.method == "POST" and recorded.params["current_soc"] == "42"


def test_refusal_is_a_response_not_an_error(smartevse: Any) -> None:
    response = asyncio.run(http.request("POST", smartevse.url + "?current_soc=140", 2.0))
    assert response.status == 400
    assert "out of range" in json.loads(response.body)["error"]


def test_refused_port_is_an_error_naming_the_connection() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(http.HttpError, match="connection failed"):
            asyncio.run(http.request("POST", f"http://127.0.0.1:{port}/ev_state", 2.0))


def test_slow_server_hits_the_timeout(fake_factory: Any) -> None:
    slow = fake_factory(delay=1.5)
    started = time.monotonic()
    with pytest.raises(http.HttpError, match="within 0.3 s"):
        asyncio.run(http.request("POST", slow.url + "?current_soc=1", 0.3))
    assert time.monotonic() - started < 1.0


def test_not_an_http_url() -> None:
    with pytest.raises(http.HttpError, match="not an http"):
        asyncio.run(http.request("GET", "ftp://x/ev_state", 1.0))


def test_stand_in_keeps_the_larger_energy_values(smartevse: Any) -> None:
    async def exchange() -> list[dict[str, Any]]:
        bodies = []
        for capacity, request in ((60000, 30000), (50000, 35000)):
            url = (f"{smartevse.url}?current_soc=40&full_soc=-1&energy_capacity={capacity}"
                   f"&energy_request={request}")
            bodies.append(json.loads((await http.request("POST", url, 2.0)).body))
        return bodies

    first, second = asyncio.run(exchange())
    assert (first["energy_capacity"], first["energy_request"]) == (60000, 30000)
    assert (second["energy_capacity"], second["energy_request"]) == (60000, 35000)
