"""Config: validation names the key, the bad value and what is allowed; env overrides apply."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from enum import Enum

import pytest

from ccsbus.config import ConfigError, Role, load_config, parse_dataclass, setting


class Mode(Enum):
    FAST = "fast"
    SAFE = "safe"


@dataclass(frozen=True)
class Example:
    interface: str = setting("eth1", help="PLC interface")
    timeout: float = setting(1.0, min=0.1, max=10, help="seconds")
    mode: Mode = setting(Mode.SAFE)
    retries: int = setting(2, min=0, max=5)


def test_defaults_and_values():
    ex = parse_dataclass(Example, {"interface": "eth2", "mode": "fast"}, "slac")
    assert ex == Example(interface="eth2", mode=Mode.FAST)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"interfase": "eth1"}, "config key 'slac.interfase': bad value 'eth1'; allowed: known keys here are"),
        ({"timeout": 99}, "config key 'slac.timeout': bad value 99; allowed: a number from 0.1 to 10"),
        ({"timeout": "soon"}, "config key 'slac.timeout': bad value 'soon'; allowed: a number"),
        ({"mode": "turbo"}, "config key 'slac.mode': bad value 'turbo'; allowed: one of fast, safe"),
        ({"retries": 1.5}, "config key 'slac.retries': bad value 1.5; allowed: an integer"),
    ],
)
def test_errors_name_key_value_and_allowed(data, message):
    with pytest.raises(ConfigError) as err:
        parse_dataclass(Example, data, "slac")
    assert str(err.value).startswith(message)


@dataclass(frozen=True)
class Needs:
    port: int = setting(help="TCP port of the thing")


def test_missing_required_key_is_named():
    with pytest.raises(ConfigError, match="config key 'x.port': bad value \\(missing\\); allowed: required"):
        parse_dataclass(Needs, {}, "x")


def test_file_env_overrides_and_role(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("role: PEV\nbroker:\n  url: mqtt://127.0.0.1:1999\nslac:\n  interface: eth3\n")
    stack = load_config(cfg, env={"CCSBUS__BROKER__BASE_TOPIC": "car", "CCSBUS__SLAC__RETRIES": "4"})
    assert stack.role is Role.PEV
    assert stack.broker.port == 1999 and stack.broker.base_topic == "car"
    assert stack.section("slac", Example).interface == "eth3"
    assert stack.section("slac", Example).retries == 4


def test_unknown_section_and_bad_url_are_named(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("slak: {}\n")
    with pytest.raises(ConfigError, match="config key 'slak'"):
        load_config(cfg, env={})
    cfg.write_text("broker: {url: 'http://x'}\n")
    with pytest.raises(ConfigError, match="config key 'broker.url'"):
        load_config(cfg, env={})


def test_shipped_config_is_valid():
    stack = load_config(None, env={})
    assert stack.broker.base_topic == "pyPlc"


@pytest.mark.parametrize(
    ("text", "key"),
    [("exi:\n  max_mesage_bytes: 10\n", "exi.max_mesage_bytes"),
     ("exi:\n  max_message_bytes: 1\n", "exi.max_message_bytes"),
     ("role: CAR\n", "role")],
)
def test_service_exits_2_naming_the_key(tmp_path, text, key):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "ccsbus", "run", "exi", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"config key '{key}'" in proc.stderr


@dataclass(frozen=True)
class Timers:
    V2G_EVCC_Msg_Timeout: float = setting(2.0, min=0.01, max=60)


def test_env_override_reaches_mixed_case_keys():
    stack = load_config(None, env={"CCSBUS__V2G__V2G_EVCC_MSG_TIMEOUT": "0.5"})
    assert stack.section("v2g", Timers).V2G_EVCC_Msg_Timeout == 0.5
