"""picoctl: operate a fleet of Raspberry Pi Pico boards from a Raspberry Pi."""

__version__ = "0.1.0"
