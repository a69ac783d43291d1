"""Structured logs: one line per event with timestamp, service, level, event and key=value fields."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_configured = False


class _LineFormatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        stamp += f".{int(record.msecs):03d}Z"
        service = getattr(record, "service", record.name.removeprefix("ccsbus."))
        fields: dict[str, Any] = getattr(record, "fields", {})
        if self.as_json:
            body = {"time": stamp, "service": service, "level": record.levelname,
                    "event": record.getMessage(), **fields}
            if record.exc_info:
                body["exception"] = self.formatException(record.exc_info)
            return json.dumps(body, default=str)
        parts = [stamp, service, record.levelname, record.getMessage()]
        parts += [f"{k}={_text(v)}" for k, v in fields.items()]
        line = " ".join(parts)
        if record.exc_info:
            line += " exception=" + json.dumps(self.formatException(record.exc_info))
        return line


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if (" " in text or not text) else text


class EventLog:
    """A logger whose calls read like events: `log.info("link up", peer="00:11:..")`."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._logger = logging.getLogger(f"ccsbus.{service}")

    def _log(self, level: int, event: str, exc: bool, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, exc_info=exc,
                             extra={"service": self.service, "fields": fields})

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, False, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, False, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, False, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, False, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, True, fields)

    def child(self, name: str) -> EventLog:
        return EventLog(f"{self.service}.{name}")


def setup_logging(level: str = "INFO", as_json: bool = False, stream: Any = None) -> None:
    """Route every ccsbus logger to one stream with the line format; idempotent."""
    global _configured
    root = logging.getLogger("ccsbus")
    root.setLevel(level)
    if _configured:
        for handler in root.handlers:
            handler.setFormatter(_LineFormatter(as_json))
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_LineFormatter(as_json))
    root.addHandler(handler)
    root.propagate = False
    _configured = True


def get_logger(service: str) -> EventLog:
    return EventLog(service)
