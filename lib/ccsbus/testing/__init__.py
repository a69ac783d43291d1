"""Test helpers shared by every service (pytest plugin: ccsbus.testing.fixtures)."""
