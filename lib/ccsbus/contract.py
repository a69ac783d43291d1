"""The topic contract: which topics exist, who may publish them, and what their payloads look like.

The contract is data (config/topics.yaml). This module turns it into typed objects and answers the
questions the bus asks on every publish and every received message.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .shape import Check, ShapeError, compile_shape

EXTERNAL = "external"
ROLES = ("EVSE", "PEV", "LISTEN")


class PayloadType(Enum):
    NUMBER = "number"
    WORD = "word"
    TEXT = "text"
    JSON = "json"


class PayloadError(ValueError):
    """A payload does not match the contract; the message says why."""


class ContractError(ValueError):
    """The contract file itself is malformed."""


@dataclass(frozen=True)
class Payload:
    type: PayloadType
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] = ()
    max_length: int | None = None
    schema: dict[str, Any] | None = None

    def decode(self, raw: bytes) -> Any:
        """Parse and validate a received payload; raise PayloadError naming the problem."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        match self.type:
            case PayloadType.NUMBER:
                return self._check_number(text.strip())
            case PayloadType.WORD:
                word = text.strip()
                if word not in self.enum:
                    raise PayloadError(f"{word!r} is not one of {', '.join(self.enum)}")
                return word
            case PayloadType.TEXT:
                if self.max_length is not None and len(text) > self.max_length:
                    raise PayloadError(f"text longer than {self.max_length} characters")
                return text
            case PayloadType.JSON:
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise PayloadError(f"invalid JSON: {exc.msg} at char {exc.pos}") from None
                self.check_json(value)
                return value
        raise AssertionError(self.type)  # pragma: no cover - enum is exhaustive

    def encode(self, value: Any) -> bytes:
        """Render a value for the wire after checking it against the contract."""
        match self.type:
            case PayloadType.NUMBER:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise PayloadError(f"{value!r} is not a number")
                self._check_range(float(value))
                return _format_number(value).encode()
            case PayloadType.WORD:
                if value not in self.enum:
                    raise PayloadError(f"{value!r} is not one of {', '.join(self.enum)}")
                return str(value).encode()
            case PayloadType.TEXT:
                text = str(value)
                if self.max_length is not None and len(text) > self.max_length:
                    raise PayloadError(f"text longer than {self.max_length} characters")
                return text.encode()
            case PayloadType.JSON:
                self.check_json(value)
                return json.dumps(value, separators=(",", ":")).encode()
        raise AssertionError(self.type)  # pragma: no cover

    def check_json(self, value: Any) -> None:
        if self.schema is None:
            return
        check: Check | None = self.__dict__.get("_check")
        if check is None:  # compiled once per topic: this runs on every message
            check = compile_shape(self.schema)
            object.__setattr__(self, "_check", check)
        error = check(value, "payload")
        if error:
            raise PayloadError(error)

    def _check_number(self, text: str) -> float | int:
        try:
            number: float | int = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise PayloadError(f"{text[:40]!r} is not a decimal number") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise PayloadError(f"{text!r} is not a finite number")
        self._check_range(float(number))
        return number

    def _check_range(self, number: float) -> None:
        if self.minimum is not None and number < self.minimum:
            raise PayloadError(f"{_format_number(number)} is below the minimum {self.minimum:g}")
        if self.maximum is not None and number > self.maximum:
            raise PayloadError(f"{_format_number(number)} is above the maximum {self.maximum:g}")


def _format_number(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) >= 1e6 else f"{round(value, 3):g}"
    return str(value)


@dataclass(frozen=True)
class RoleUse:
    direction: str  # "in" or "out"
    publishers: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Topic:
    path: str
    meaning: str
    payload: Payload
    retained: bool
    qos: int
    unit: str | None = None
    roles: dict[str, RoleUse] = field(default_factory=dict)
    absolute: bool = False
    ha: dict[str, Any] = field(default_factory=dict)
    per_service: bool = False

    @property
    def user_facing(self) -> bool:
        return "/" not in self.path and not self.absolute

    def publishers(self, role: str | None = None) -> set[str]:
        uses = [self.roles[role]] if role is not None and role in self.roles else []
        if role is None:
            uses = list(self.roles.values())
        return {p for use in uses for p in use.publishers}

    def pattern(self) -> re.Pattern[str]:
        parts = [("[^/]+" if _is_placeholder(p) else re.escape(p)) for p in self.path.split("/")]
        return re.compile("^" + "/".join(parts) + "$")

    def mqtt_filter(self) -> str:
        return "/".join("+" if _is_placeholder(p) else p for p in self.path.split("/"))


def _is_placeholder(part: str) -> bool:
    return part.startswith("{") and part.endswith("}")


_INDEX_LIMIT = 4096  # concrete paths remembered per contract (clients come and go)


@dataclass(frozen=True, eq=False)
class Contract:
    base: str
    services: dict[str, str]
    topics: tuple[Topic, ...]
    _index: dict[str, Topic] = field(init=False, repr=False)
    _patterns: tuple[tuple[Topic, re.Pattern[str]], ...] = field(init=False, repr=False)

    def with_base(self, base: str) -> Contract:
        return Contract(base=base, services=self.services, topics=self.topics)

    def full_topic(self, path: str) -> str:
        topic = self.find(path)
        return path if topic.absolute else f"{self.base}/{path}"

    def relative(self, full: str) -> str:
        prefix = self.base + "/"
        return full[len(prefix):] if full.startswith(prefix) else full

    def find(self, path: str) -> Topic:
        """The topic entry a concrete path belongs to; KeyError when the contract has none."""
        exact = self._by_path().get(path)
        if exact is not None:
            return exact
        # concrete paths under a placeholder (exi/reply/<client>, <service>/status) recur on every
        # message of a request/reply exchange: remember them instead of matching all patterns again
        for topic, compiled in self._patterns:
            if compiled.match(path):
                if len(self._index) < _INDEX_LIMIT:
                    self._index[path] = topic
                return topic
        raise KeyError(path)

    def may_publish(self, service: str, path: str, role: str) -> bool:
        try:
            topic = self.find(path)
        except KeyError:
            return False
        if topic.per_service:
            return path.split("/", 1)[0] == service
        return service in topic.publishers(role)

    def user_facing(self) -> list[Topic]:
        return [t for t in self.topics if t.user_facing]

    def published_by(self, service: str, role: str | None = None) -> list[Topic]:
        out = []
        for topic in self.topics:
            if topic.per_service or service in topic.publishers(role):
                out.append(topic)
        return out

    def expand(self, topic: Topic, service: str) -> str:
        return topic.path.replace("{service}", service)

    def _by_path(self) -> dict[str, Topic]:
        return self._index

    def __post_init__(self) -> None:
        index = {t.path: t for t in self.topics if "{" not in t.path}
        object.__setattr__(self, "_index", index)
        patterns = tuple((t, t.pattern()) for t in self.topics if "{" in t.path)
        object.__setattr__(self, "_patterns", patterns)


def _payload_from(spec: dict[str, Any], where: str) -> Payload:
    try:
        kind = PayloadType(spec["type"])
    except (KeyError, ValueError):
        raise ContractError(f"{where}: payload.type must be one of number, word, text, json") from None
    schema = spec.get("schema")
    if kind is PayloadType.JSON and schema is not None:
        try:
            compile_shape(schema)
        except (ShapeError, re.error) as exc:
            raise ContractError(f"{where}: invalid payload schema: {exc}") from None
    if kind is PayloadType.WORD and not spec.get("enum"):
        raise ContractError(f"{where}: a word payload needs an enum")
    return Payload(
        type=kind,
        minimum=spec.get("min"),
        maximum=spec.get("max"),
        enum=tuple(str(v) for v in spec.get("enum", ())),
        max_length=spec.get("max_length"),
        schema=schema,
    )


def _topic_from(entry: dict[str, Any], services: dict[str, str], per_service: bool) -> Topic:
    path = entry.get("path")
    if not isinstance(path, str) or not path:
        raise ContractError(f"topic entry without a path: {entry!r}")
    known = {"path", "meaning", "payload", "retained", "qos", "unit", "roles", "absolute", "ha"}
    unknown = set(entry) - known
    if unknown:
        raise ContractError(f"{path}: unknown keys {sorted(unknown)}")
    roles: dict[str, RoleUse] = {}
    for role, use in (entry.get("roles") or {}).items():
        if role not in ROLES:
            raise ContractError(f"{path}: role {role!r} is not one of {', '.join(ROLES)}")
        if use.get("dir") not in ("in", "out"):
            raise ContractError(f"{path}: roles.{role}.dir must be in or out")
        pubs = tuple(use.get("pub") or ())
        for pub in pubs:
            if pub not in services:
                raise ContractError(f"{path}: roles.{role}.pub names unknown service {pub!r}")
        roles[role] = RoleUse(direction=use["dir"], publishers=pubs)
    qos = entry.get("qos", 0)
    if qos not in (0, 1):
        raise ContractError(f"{path}: qos must be 0 or 1 (MQTT 3.1.1 brokers here use no QoS 2)")
    return Topic(
        path=path,
        meaning=str(entry.get("meaning", "")),
        payload=_payload_from(entry.get("payload") or {}, path),
        retained=bool(entry.get("retained", False)),
        qos=qos,
        unit=entry.get("unit"),
        roles=roles,
        absolute=bool(entry.get("absolute", False)),
        ha=dict(entry.get("ha") or {}),
        per_service=per_service,
    )


def parse_contract(data: dict[str, Any]) -> Contract:
    services = dict(data.get("services") or {})
    if not services:
        raise ContractError("the contract names no services")
    topics: list[Topic] = []
    for entry in data.get("per_service") or []:
        topics.append(_topic_from(entry, services, per_service=True))
    for entry in data.get("topics") or []:
        topics.append(_topic_from(entry, services, per_service=False))
    seen: set[str] = set()
    for topic in topics:
        if topic.path in seen:
            raise ContractError(f"{topic.path}: listed twice")
        seen.add(topic.path)
    return Contract(base=str(data.get("base", "pyPlc")), services=services, topics=tuple(topics))


def contract_path() -> Path:
    """Where the contract file is: $CCSBUS_CONTRACT, the source tree, or the installed copy."""
    env = os.environ.get("CCSBUS_CONTRACT")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "config" / "topics.yaml", here / "data" / "topics.yaml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("topics.yaml not found: set CCSBUS_CONTRACT to its path")


@cache
def load_contract(path: str | None = None) -> Contract:
    file = Path(path) if path else contract_path()
    with file.open(encoding="utf-8") as fh:
        return parse_contract(yaml.safe_load(fh))
