# USB Pico app: JSON-lines telemetry on the serial console.
# Each line is one JSON object; {"type": "heartbeat", ...} lines are recorded by the hub
# (picoctl usb log forwards them). Settings come from /config.json:
#   {"id": "pico-bench-1", "heartbeat_s": 10, "sample_s": 2}
# The version comes from /version.json, written by `picoctl usb push` with a release.
import gc
import json
import sys
import time

try:
    import machine
except ImportError:
    machine = None


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def board_id(cfg):
    if cfg.get("id"):
        return cfg["id"]
    try:
        return "pico-" + "".join("%02x" % b for b in machine.unique_id())
    except (AttributeError, TypeError):
        return "pico-unknown"


def make_sensor():
    # The RP2's internal temperature sensor (ADC 4); absent on other ports.
    try:
        adc = machine.ADC(4)
    except (AttributeError, TypeError, ValueError):
        return None
    return lambda: round(27 - (adc.read_u16() * 3.3 / 65535 - 0.706) / 0.001721, 1)


def emit(obj):
    sys.stdout.write(json.dumps(obj))
    sys.stdout.write("\n")


def main():
    cfg = load("/config.json")
    dev = board_id(cfg)
    version = load("/version.json").get("version", "0.0.0")
    heartbeat_ms = int(float(cfg.get("heartbeat_s", 10)) * 1000)
    sample_ms = int(float(cfg.get("sample_s", 2)) * 1000)
    sensor = make_sensor()
    start = time.ticks_ms()
    last_hb = last_sample = None
    readings = {}
    emit({"type": "boot", "id": dev, "version": version})
    while True:
        now = time.ticks_ms()
        if sensor and (last_sample is None or time.ticks_diff(now, last_sample) >= sample_ms):
            last_sample = now
            readings["temp_c"] = sensor()
            emit({"type": "reading", "id": dev, "readings": readings})
        if last_hb is None or time.ticks_diff(now, last_hb) >= heartbeat_ms:
            last_hb = now
            gc.collect()
            emit({"type": "heartbeat", "id": dev, "version": version,
                  "uptime_s": time.ticks_diff(now, start) // 1000, "mem_free": gc.mem_free(),
                  "readings": readings})
        time.sleep_ms(50)


main()
