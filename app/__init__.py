"""Web2Code Desktop: the application (engine, GUI, command line, config, history)."""

__version__ = "0.1.0"
