"""A stand-in SmartEVSE: a real HTTP server on a free loopback port applying SmartEVSE's /ev_state rules.

Rules (as the wallbox documents them): parameters in the query string, current_soc only 0..100 (else
400), full_soc / energy_capacity / energy_request keep the larger of old and new, evccid at most 32
characters, a 200 JSON answer echoing the values; firmware v4 takes GET ?update_ev_state=1.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass
class EvState:
    current_soc: int = -1
    full_soc: int = -1
    energy_capacity: int = -1
    energy_request: int = -1
    evccid: str = ""


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    time: float


@dataclass
class FakeSmartEvse:
    port: int
    delay: float = 0.0  # seconds each answer takes (a slow wallbox)
    state: EvState = field(default_factory=EvState)
    requests: list[Recorded] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ev_state"

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake.handle(self, "POST")

            def do_GET(self) -> None:
                fake.handle(self, "GET")

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            parts = urlsplit(handler.path)
            params = {k: v[0] for k, v in parse_qs(parts.query).items()}
            with self.lock:
                self.requests.append(Recorded(method, parts.path, params, time.monotonic()))
            if self.delay:
                time.sleep(self.delay)
            status, body = self.apply(method, parts.path, params)
            data = json.dumps(body).encode()
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)
        finally:
            with self.lock:
                self.in_flight -= 1

    def apply(self, method: str, path: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if path != "/ev_state":
            return 404, {"error": "not found"}
        if method == "GET":
            if params.get("update_ev_state") == "1":
                return 200, {"update_ev_state": 1}
            return 400, {"error": "update_ev_state=1 expected"}
        try:
            soc = int(params["current_soc"])
        except (KeyError, ValueError):
            return 400, {"error": "current_soc missing"}
        if not 0 <= soc <= 100:
            return 400, {"error": "current_soc out of range"}
        evccid = params.get("evccid", "")
        if len(evccid) > 32:
            return 400, {"error": "evccid too long"}
        with self.lock:
            s = self.state
            s.current_soc = soc
            for key in ("full_soc", "energy_capacity", "energy_request"):
                if key in params:
                    setattr(s, key, max(getattr(s, key), int(params[key])))
            if evccid:
                s.evccid = evccid
            return 200, {"current_soc": s.current_soc, "full_soc": s.full_soc,
                         "energy_capacity": s.energy_capacity, "energy_request": s.energy_request,
                         "evccid": s.evccid}


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smartevse() -> Iterator[FakeSmartEvse]:
    fake = FakeSmartEvse(free_tcp_port())
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_factory() -> Iterator[Any]:
    made: list[FakeSmartEvse] = []

    def make(port: int | None = None, delay: float = 0.0) -> FakeSmartEvse:
        fake = FakeSmartEvse(port or free_tcp_port(), delay=delay)
        fake.start()
        made.append(fake)
        return fake

    yield make
    for fake in made:
        fake.stop()
