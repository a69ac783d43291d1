"""One config file (config/ccsbus.yaml), a section per service, validated into dataclasses.

Environment overrides use `CCSBUS__<SECTION>__<KEY>=value` (double underscores separate levels; the
value is read as YAML, so `5`, `true` and `[1, 2]` keep their types). Every error names the key, the
bad value and what is allowed, so a user can fix the file without reading code.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import yaml

ENV_PREFIX = "CCSBUS__"
CONFIG_ENV = "CCSBUS_CONFIG"
EXIT_CONFIG_ERROR = 2

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        shown = "(missing)" if value is _MISSING else repr(value)
        super().__init__(f"config key '{key}': bad value {shown}; allowed: {allowed}")


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


_MISSING: Any = _Missing()


class Role(Enum):
    EVSE = "EVSE"
    PEV = "PEV"
    LISTEN = "LISTEN"


class LogLevel(Enum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


def setting(default: Any = dataclasses.MISSING, *, help: str = "", min: float | None = None,
            max: float | None = None, **kw: Any) -> Any:
    """A dataclass field with the description and bounds the validator and the docs use."""
    meta = {"help": help, "min": min, "max": max}
    if default is dataclasses.MISSING and "default_factory" not in kw:
        return field(metadata=meta, **kw)
    if isinstance(default, list | dict):
        template: list[Any] | dict[Any, Any] = default
        return field(default_factory=lambda: type(template)(template), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass(frozen=True)
class BrokerConfig:
    url: str = setting("", help="mqtt://host:port or mqtts://host:port; empty starts the embedded broker")
    username: str = setting("", help="broker user name (empty: anonymous)")
    password: str = setting("", help="broker password")
    tls_ca: str = setting("", help="CA file for mqtts://")
    tls_cert: str = setting("", help="client certificate for mqtts://")
    tls_key: str = setting("", help="client key for mqtts://")
    tls_insecure: bool = setting(False, help="skip the server host-name check (test benches only)")
    base_topic: str = setting("pyPlc", help="base of every ccsbus topic; pyPLC flows expect pyPlc")
    keepalive: int = setting(5, min=2, max=600, help="MQTT keepalive in seconds")
    reconnect_min: float = setting(0.2, min=0.05, max=60, help="first reconnect delay, seconds")
    reconnect_max: float = setting(5.0, min=0.1, max=600, help="longest reconnect delay, seconds")
    embedded_port: int = setting(1883, min=0, max=65535, help="port of the embedded broker")

    def __post_init__(self) -> None:
        if self.url:
            parsed = urlparse(self.url)
            if parsed.scheme not in ("mqtt", "mqtts", "tcp") or not parsed.hostname:
                raise ConfigError("broker.url", self.url, "mqtt://host[:port] or mqtts://host[:port]")
        if not self.base_topic or "#" in self.base_topic or "+" in self.base_topic:
            raise ConfigError("broker.base_topic", self.base_topic, "a topic prefix without wildcards")

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parsed = urlparse(self.url)
        if parsed.port:
            return parsed.port
        return 8883 if parsed.scheme == "mqtts" else 1883

    @property
    def tls(self) -> bool:
        return urlparse(self.url).scheme == "mqtts"


@dataclass(frozen=True)
class LogConfig:
    level: LogLevel = setting(LogLevel.INFO, help="lowest level that is printed")
    json: bool = setting(False, help="one JSON object per line instead of key=value text")


SERVICE_SECTIONS = ("slac", "v2g", "exi", "hw", "can", "soc", "ha", "sim")


@dataclass(frozen=True)
class StackConfig:
    """The whole file: shared parts typed here, service sections kept raw until the service reads them."""

    role: Role
    broker: BrokerConfig
    log: LogConfig
    sections: Mapping[str, Mapping[str, Any]]
    source: str

    def section(self, name: str, cls: type[T]) -> T:
        return parse_dataclass(cls, self.sections.get(name) or {}, name)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if isinstance(tp, type) and issubclass(tp, Enum):
        return "one of " + ", ".join(str(m.value) for m in tp)
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, key: str, meta: Mapping[str, Any]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key, meta)
            except ConfigError as exc:
                errors.append(exc.allowed)
        raise ConfigError(key, value, " or ".join(errors))
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(key, value, "one of " + ", ".join(map(str, args)))
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(key, value, f"a list of {_type_name(args[0])}")
        items = [_coerce(args[0], v, f"{key}[{i}]", meta) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, value, "a mapping")
        return {str(k): _coerce(args[1], v, f"{key}.{k}", meta) for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(key, value, f"a mapping of {tp.__name__} settings")
        return parse_dataclass(tp, value, key)
    if isinstance(tp, type) and issubclass(tp, Enum):
        for member in tp:
            if value == member.value or (isinstance(value, str) and value.upper() == str(member.value).upper()):
                return member
        raise ConfigError(key, value, _type_name(tp))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, value, "true or false")
        return value
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, value, "an integer" if tp is int else "a number")
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(key, value, "an integer")
        number = tp(value)
        lo, hi = meta.get("min"), meta.get("max")
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            raise ConfigError(key, value, f"a number from {lo:g} to {hi:g}" if lo is not None and hi is not None
                              else f"a number {'>=' if lo is not None else '<='} {lo if lo is not None else hi:g}")
        return number
    if tp is str:
        if isinstance(value, bool) or value is None or isinstance(value, Mapping | list):
            raise ConfigError(key, value, "a string")
        return str(value)
    if tp is Any:
        return value
    raise TypeError(f"{key}: unsupported setting type {tp!r}")


def parse_dataclass(cls: type[T], data: Mapping[str, Any], prefix: str) -> T:
    """Build `cls` from a mapping; unknown keys and bad values raise ConfigError naming the key."""
    assert dataclasses.is_dataclass(cls)
    if not isinstance(data, Mapping):
        raise ConfigError(prefix, data, "a mapping of settings")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    # environment variables arrive lower-cased; timer names such as V2G_EVCC_Msg_Timeout are not
    by_lower = {name.lower(): name for name in fields}
    data = {(k if k in fields else by_lower.get(str(k).lower(), k)): v for k, v in data.items()}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(key, data[unknown[0]], "known keys here are " + ", ".join(sorted(fields)))
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], key, f.metadata)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(key, _MISSING, f"required: {f.metadata.get('help') or _type_name(hints[name])}")
    return cls(**kwargs)


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        if not path:
            continue
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node[path[-1]] = value


def default_config_path() -> Path:
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    local = Path("config/ccsbus.yaml")
    if local.is_file():
        return local
    return Path(__file__).resolve().parents[2] / "config" / "ccsbus.yaml"


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> StackConfig:
    """Read, override from the environment and validate the shared parts of the config file."""
    env = os.environ if env is None else env
    file = Path(path) if path is not None else default_config_path()
    data: dict[str, Any] = {}
    if file.is_file():
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(str(file), "(unparsable)", f"valid YAML{where}: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(str(file), type(loaded).__name__, "a mapping of sections")
        data = loaded or {}
    elif path is not None:
        raise ConfigError(str(file), "(no such file)", "a readable YAML file")
    _apply_env(data, env)
    known = {"role", "broker", "log", *SERVICE_SECTIONS}
    for key in data:
        if key not in known:
            raise ConfigError(str(key), data[key], "top-level sections are " + ", ".join(sorted(known)))
    role = _coerce(Role, data.get("role", "EVSE"), "role", {})
    broker = parse_dataclass(BrokerConfig, data.get("broker") or {}, "broker")
    log = parse_dataclass(LogConfig, data.get("log") or {}, "log")
    sections = {name: dict(data.get(name) or {}) for name in SERVICE_SECTIONS}
    for name, value in sections.items():
        if not isinstance(data.get(name) or {}, dict):
            raise ConfigError(name, data.get(name), "a mapping of settings")
        sections[name] = value
    return StackConfig(role=role, broker=broker, log=log, sections=sections, source=str(file))


def describe(cls: type[Any], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) rows of a settings dataclass, for docs and --help."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        nested = hints[f.name]
        if isinstance(nested, type) and dataclasses.is_dataclass(nested):
            rows += describe(nested, key)
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default.value if isinstance(f.default, Enum) else f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        rows.append((key, _type_name(hints[f.name]), repr(default), str(f.metadata.get("help", ""))))
    return rows
