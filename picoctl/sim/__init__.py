"""Simulated hardware for the demo and the tests: a virtual USB Pico and a virtual BOOTSEL drive."""


class SimError(RuntimeError):
    """The rig itself failed (a process or thread that would not stop), not the code under test."""
