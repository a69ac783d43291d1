"""ccsbus common library: the bus, the topic contract, config, logging and service lifecycle."""

__version__ = "0.1.0"
