"""The example `can:` section parses, and bad values are refused naming the key."""

from __future__ import annotations

import pytest

from ccsbus.config import ConfigError, load_config, parse_dataclass
from ccsbus_can.bridge import BatteryVoltageSource
from ccsbus_can.service import CanSettings


def test_example_section_parses() -> None:
    settings = load_config(env={}).section("can", CanSettings)
    assert settings.interface == "socketcan" and settings.bitrate == 500000
    assert settings.battery_voltage_source is BatteryVoltageSource.TARGET_VOLTAGE


def test_bad_values_name_the_key() -> None:
    with pytest.raises(ConfigError, match="can.cycle_ms"):
        parse_dataclass(CanSettings, {"cycle_ms": 5}, "can")
    with pytest.raises(ConfigError, match="can.battery_voltage_source"):
        parse_dataclass(CanSettings, {"battery_voltage_source": "inlet"}, "can")
    with pytest.raises(ConfigError, match=r"can.interface.*goes in can.channel"):
        parse_dataclass(CanSettings, {"interface": "can0"}, "can")
