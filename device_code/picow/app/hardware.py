"""The sample app's sensor and actuator: a capacitive soil-moisture sensor on GP26 and a pump relay on
GP15. They belong to the app (a pin change ships as a release); reset, watchdog and Wi-Fi stay in
ota/hw.py.

On the unix port the sensor reads `moisture` in the rig's hardware folder (PICOW_SIM, else `sim/`; a
percentage) and the pump prints `@pump on|off`.
"""

import sys

BOARD = sys.platform == "rp2"
SENSOR_PIN = 26
PUMP_PIN = 15
AIR, WATER = 52000, 23000  # raw ADC readings of the sensor in dry air and in water

if BOARD:
    import machine
else:
    import os

_adc = None
_pump_pin = None
_pump_state = None


def moisture_percent():
    """Soil moisture in percent: 0 dry air, 100 in water."""
    global _adc
    if BOARD:
        if _adc is None:
            _adc = machine.ADC(SENSOR_PIN)
        pct = (AIR - _adc.read_u16()) * 100 // (AIR - WATER)  # capacitive sensors read high when dry
        return max(0, min(100, pct))
    try:
        with open((os.getenv("PICOW_SIM") or "sim") + "/moisture") as f:  # the path is not kept: see ota/hw.py
            return float(f.read())
    except (OSError, ValueError):
        return 50.0


def pump(on):
    """Switch the pump relay."""
    global _pump_pin, _pump_state
    on = bool(on)
    if BOARD:
        if _pump_pin is None:
            _pump_pin = machine.Pin(PUMP_PIN, machine.Pin.OUT)
        _pump_pin.value(1 if on else 0)
    elif on != _pump_state:
        print("@pump", "on" if on else "off")
    _pump_state = on
