"""ccsbus package."""
