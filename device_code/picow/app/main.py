"""Sample fleet app: soil moisture on GP26 drives a pump on GP15 with hysteresis and a run limit.

The OTA agent runs beside it: `step()` is called every tick (downloads included), `readings()` goes
into heartbeats, `may_switch()` holds a staged update back while the pump runs (the agent waits at
most `switch_deadline_s`), and `stop()` makes the pump safe before the switch. The agent confirms a
trial boot on the first heartbeat the hub accepts.
"""

import hardware
from ota import agent, fs, hw

# Defaults, each overridable under "app" in config.json.
SETTINGS = {
    "dry_below": 30.0,  # start watering under this moisture (percent)
    "wet_above": 45.0,  # stop above this one
    "max_run_s": 30,  # never run the pump longer than this in one go
    "rest_s": 60,  # and let the soil settle this long after a forced stop
}


class Watering:
    def __init__(self, settings):
        self.dry_below = settings["dry_below"]
        self.wet_above = settings["wet_above"]
        self.max_run_ms = int(settings["max_run_s"] * 1000)
        self.rest_ms = int(settings["rest_s"] * 1000)
        self.moisture = hardware.moisture_percent()
        self.on = False
        self.since = hw.ticks_ms()
        self.rest_until = None
        self.forced_stops = 0
        hardware.pump(False)

    def step(self):
        self.moisture = hardware.moisture_percent()
        if self.on:
            if self.moisture >= self.wet_above:
                self._set(False)
            elif hw.elapsed_ms(self.since) >= self.max_run_ms:
                self._set(False)
                self.forced_stops += 1
                self.rest_until = hw.deadline(self.rest_ms)
        elif self.moisture < self.dry_below and (self.rest_until is None or hw.due(self.rest_until)):
            self.rest_until = None
            self._set(True)

    def _set(self, on):
        self.on = on
        self.since = hw.ticks_ms()
        hardware.pump(on)

    def readings(self):
        return {"moisture": self.moisture, "pump": self.on, "forced_stops": self.forced_stops}

    def may_switch(self):
        return not self.on

    def stop(self):
        self._set(False)


def settings():
    cfg = fs.read_json("config.json", {}) or {}
    out = dict(SETTINGS)
    out.update(cfg.get("app") or {})
    return out


agent.run(Watering(settings()))
