"""USB-attached boards: detection, UF2 flashing, serial file push, esptool, serial log, telemetry."""

RP2_VID = 0x2E8A
SERIAL_BAUD = 115200  # a board's USB serial console: the raw REPL and its output
ESP_BAUD = 460800  # esptool's speed once connected (it connects at the ROM's 115200)
