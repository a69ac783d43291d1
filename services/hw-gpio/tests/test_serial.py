"""The serial boards over a real pty pair: the exact bytes of each line protocol."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Iterator

import pytest

from ccsbus_hw.backends.celeron55 import Celeron55Backend, parse_line
from ccsbus_hw.backends.dieter import DieterBackend, output_line, parse_adc


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    try:
        yield master, path
    finally:
        os.close(master)
        os.close(slave)


def read_exact(fd: int, n: int, timeout: float = 2.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            out += os.read(fd, n - len(out))
    return out


def nothing_more(fd: int) -> bool:
    ready, _, _ = select.select([fd], [], [], 0.1)
    return not ready


def poll_until(backend: object, predicate: object, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backend.poll(time.monotonic(), 0.01)  # type: ignore[attr-defined]
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError("board input not seen")


def test_dieter_output_bits() -> None:
    assert output_line(False, False, False) == "do0000"
    assert output_line(True, False, False) == "do0001"
    assert output_line(False, True, False) == "do0002"
    assert output_line(True, True, True) == "do0007"
    assert parse_adc("A0=517") == 517
    assert parse_adc("B1=3") is None
    with pytest.raises(ValueError):
        parse_adc("A0=x")


def test_dieter_board_over_pty(pty: tuple[int, str]) -> None:
    master, path = pty
    board = DieterBackend(path, 19200, volts_per_count=0.5)
    try:
        assert read_exact(master, 7) == b"do0000\n"  # safe state on open
        board.set_cp_state("C")
        assert read_exact(master, 7) == b"do0001\n"
        board.set_contactors(True)
        assert read_exact(master, 7) == b"do0007\n"
        board.set_contactors(True)  # unchanged: nothing is re-sent
        assert nothing_more(master)
        board.set_cp_state("B")
        board.set_contactors(False)
        assert read_exact(master, 14) == b"do0006\ndo0000\n"
        board.display("CurrentDemand")
        assert read_exact(master, 16) == b"lcCurrentDemand\n"

        os.write(master, b"A0=800\r\nA0=7")
        poll_until(board, lambda: board.read_inlet_voltage() == 400.0)
        os.write(master, b"20\n")  # a line split over two reads
        poll_until(board, lambda: board.read_inlet_voltage() == 360.0)
        assert board.drain_errors() == []
        os.write(master, b"A0=lots\nhello\n")
        poll_until(board, lambda: len(board._errors) >= 2)
        errors = board.drain_errors()
        assert "bad A0 line" in errors[0] and "unknown line" in errors[1]
        assert board.read_inlet_voltage() == 360.0  # bad lines change nothing
    finally:
        board.close()


def test_dieter_output_line_is_repeated(pty: tuple[int, str]) -> None:
    master, path = pty
    board = DieterBackend(path, 19200, volts_per_count=0.701)
    try:
        assert read_exact(master, 7) == b"do0000\n"
        board.poll(10.0, 0.02)  # first tick: the board hears the line again
        assert read_exact(master, 7) == b"do0000\n"
        board.set_contactors(True)
        assert read_exact(master, 7) == b"do0006\n"
        board.poll(10.3, 0.02)
        assert nothing_more(master)
        board.poll(10.6, 0.02)
        assert read_exact(master, 7) == b"do0006\n"
    finally:
        board.close()


def test_dieter_without_relay2(pty: tuple[int, str]) -> None:
    master, path = pty
    board = DieterBackend(path, 19200, volts_per_count=1.0, relay2=False)
    try:
        assert read_exact(master, 7) == b"do0000\n"
        board.set_contactors(True)
        assert read_exact(master, 7) == b"do0002\n"
    finally:
        board.close()


def test_dieter_refuses_uncalibrated_adc(pty: tuple[int, str]) -> None:
    _, path = pty
    with pytest.raises(ValueError, match="adc_volts_per_count"):
        DieterBackend(path, 19200, volts_per_count=0.0)


def test_celeron55_parse() -> None:
    assert parse_line("inlet_v=398.5") == ("inlet_v", 398.5)
    assert parse_line("contactor_confirmed=1") == ("contactor_confirmed", True)
    for bad in ("inlet_v", "inlet_v=abc", "plugged_in=2", "warp=9"):
        with pytest.raises(ValueError):
            parse_line(bad)


def test_celeron55_board_over_pty(pty: tuple[int, str]) -> None:
    master, path = pty
    board = Celeron55Backend(path, 115200)
    try:
        assert nothing_more(master)  # nothing is sent before the first command
        board.set_cp_state("C")
        assert read_exact(master, 5) == b"cp=1\n"
        board.set_lock(True)
        assert read_exact(master, 5) == b"lock\n"
        board.set_contactors(True)
        assert read_exact(master, 12) == b"contactor=1\n"
        board.set_contactors(False)
        board.set_lock(False)
        board.set_cp_state("B")
        assert read_exact(master, 24) == b"contactor=0\nunlock\ncp=0\n"
        board.display(1, "SoC 42 %")
        assert read_exact(master, 15) == b"disp1=SoC 42 %\n"

        os.write(master, b"inlet_v=401.5\ndc_link_v=398\ncp_pwm=5\nmax_charge_a=125\n"
                         b"soc_percent=42\ncontactor_confirmed=1\ncp_output_state=0\n"
                         b"ccs_contactor_wanted_closed=0\nplugged_in=1\n")
        poll_until(board, lambda: board.plugged() is True)
        assert board.read_inlet_voltage() == 401.5
        assert board.read_contactor_feedback() is True
        battery = board.read_battery()
        assert battery is not None
        assert (battery.voltage, battery.soc, battery.target_current) == (398.0, 42.0, 125.0)
        cp = board.read_cp()
        assert cp is not None and (cp.state, cp.duty) == ("B", 5.0)
        assert board.drain_errors() == []  # the echo lines are known
        os.write(master, b"plugged_in=0\nsoc_percent=lots\n")
        poll_until(board, lambda: board.plugged() is False)
        unplugged = board.read_cp()
        assert unplugged is not None and unplugged.state == "A"
        poll_until(board, lambda: len(board._errors) >= 1)
        assert "soc_percent is not a number" in board.drain_errors()[0]
    finally:
        board.close()
