"""The agent's start, for ota/agent.py: its settings (config.json over DEFAULTS), its update state and
its boot epoch, read once when the Agent is made; loaded for that (and for a new epoch, once every
million requests) and dropped after, so this code does not take the app's RAM while the agent runs.
"""

import random
from binascii import unhexlify

import ota
from ota import fs, hw
from ota.agent import STATE

CONFIG = "config.json"
EPOCH = "ota/epoch"
DEFAULTS = {
    "type": "picow",
    "heartbeat_s": 60,
    "check_s": 300,
    "jitter": 0.1,
    "trial_deadline_s": 120,
    "download_retries": 5,
    "oom_tries": 3,
    "wifi_timeout_s": 15,
    "tick_ms": 1000,
    "trial_boots": 3,
    "wdt_ms": 8000,
    "request_s": 10,
    "min_rate_bps": 1024,
    "switch_deadline_s": 120,
}


def load_state():
    st = fs.read_json(STATE)
    if not isinstance(st, dict):
        st = {}
    st.setdefault("version", "0.0.0")
    st.setdefault("seq", 0)
    st.setdefault("phase", "committed")
    return st


def init(a, cfg):
    """Set up the Agent `a` from `cfg` (None: config.json's)."""
    cfg = cfg if cfg is not None else fs.read_json(CONFIG)
    if not isinstance(cfg, dict):
        raise ValueError("config.json missing or unreadable")
    for k in DEFAULTS:
        cfg.setdefault(k, DEFAULTS[k])
    a.cfg = cfg
    a.id = cfg["id"]
    a.key = unhexlify(cfg["key"])
    a.hub = cfg["hub"].rstrip("/")
    a.tls = ota.call("tls", "pinned", cfg) if a.hub.startswith("https://") else None
    a.st = load_state()
    a.keys = None
    a.buf = ota.BUF  # one transfer at a time, whichever agent makes it
    a.mv = memoryview(a.buf)
    a.started = hw.ticks_ms()
    a.n = 0
    a.epoch = next_epoch()
    a.job = None  # the duty in progress, a generator advanced by poll()
    a.switch_by = None  # staged: when the switch goes ahead whatever the app says
    a.check_now = a.st["phase"] in ("downloading", "failed") and bool(a.st.get("offer"))
    a.next_hb = hw.deadline(0)
    a.next_flush = hw.deadline(0)
    a.next_check = hw.deadline(random.random() * min(a._ms("check_s"), 5000))
    a.next_wifi = hw.deadline(0)
    a.wifi_backoff = 1000
    a.trial_until = hw.deadline(a._ms("trial_deadline_s"))


def next_epoch():
    """The epoch after the saved one, saved (best effort) before it is used."""
    try:
        with open(EPOCH) as f:
            epoch = int(f.read()) + 1
    except (OSError, ValueError):
        epoch = 1
    try:
        fs.write_atomic(EPOCH, str(epoch).encode())
    except OSError as exc:  # a full flash must not stop the app; the hub refuses reused counters
        print("ota: epoch not saved:", exc)
    return epoch
