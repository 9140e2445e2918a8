"""Simulated hardware for the demo and the tests: a virtual USB Pico and a virtual BOOTSEL drive."""
