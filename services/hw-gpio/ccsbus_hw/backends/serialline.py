"""Line-oriented, non-blocking access to a serial board (pyserial)."""

from __future__ import annotations

from typing import Any

MAX_LINE = 256


class SerialLines:
    def __init__(self, port: str, baudrate: int, serial_factory: Any = None) -> None:
        if serial_factory is None:
            import serial

            serial_factory = serial.Serial
        self.port = port
        self.dev = serial_factory(port, baudrate=baudrate, timeout=0, write_timeout=0.5)
        self._buf = bytearray()
        self.overflows = 0

    def write_line(self, text: str) -> None:
        self.dev.write(text.encode("ascii") + b"\n")
        self.dev.flush()

    def read_lines(self) -> list[str]:
        waiting = self.dev.in_waiting
        if waiting:
            self._buf += self.dev.read(waiting)
        lines: list[str] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                break
            raw = bytes(self._buf[:end]).strip(b"\r")
            del self._buf[:end + 1]
            lines.append(raw.decode("ascii", "replace"))
        if len(self._buf) > MAX_LINE:  # garbage without line ends: drop it, keep the tail
            self.overflows += 1
            del self._buf[:-MAX_LINE]
        return lines

    def close(self) -> None:
        self.dev.close()
