"""USB-attached boards: detection, UF2 flashing, serial file push, esptool, serial log, telemetry."""

RP2_VID = 0x2E8A
