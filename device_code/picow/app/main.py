"""Sample fleet app: soil moisture on GP26 drives a pump on GP15 with hysteresis and a run limit.

The OTA agent runs beside it: `step()` is called every tick, `readings()` goes into heartbeats, and
`stop()` makes the pump safe before an update. The agent confirms a trial boot on the first heartbeat
the hub accepts.
"""

from ota import agent, hw

DRY_BELOW = 30.0  # start watering under this moisture (percent)
WET_ABOVE = 45.0  # stop above this one
MAX_RUN_MS = 30000  # never run the pump longer than this in one go
REST_MS = 60000  # and let the soil settle this long after a forced stop


class Watering:
    def __init__(self):
        self.moisture = hw.moisture_percent()
        self.on = False
        self.since = hw.ticks_ms()
        self.rest_until = None
        self.forced_stops = 0
        hw.pump(False)

    def step(self):
        self.moisture = hw.moisture_percent()
        if self.on:
            if self.moisture >= WET_ABOVE:
                self._set(False)
            elif hw.elapsed_ms(self.since) >= MAX_RUN_MS:
                self._set(False)
                self.forced_stops += 1
                self.rest_until = hw.deadline(REST_MS)
        elif self.moisture < DRY_BELOW and (self.rest_until is None or hw.due(self.rest_until)):
            self.rest_until = None
            self._set(True)

    def _set(self, on):
        self.on = on
        self.since = hw.ticks_ms()
        hw.pump(on)

    def readings(self):
        return {"moisture": self.moisture, "pump": self.on, "forced_stops": self.forced_stops}

    def stop(self):
        self._set(False)


agent.run(Watering())
