"""Board detection: classification of pyserial ports, BOOTSEL drives, virtual boards, polling."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest
from serial.tools.list_ports_common import ListPortInfo

from picoctl import config
from picoctl.errors import BadInput
from picoctl.sim.bootsel_drive import make_drive
from picoctl.sim.virtual_pico import VirtualPico
from picoctl.usb import detect
from picoctl.sim.board import find_micropython

HAVE_MP = find_micropython() is not None


def port(device="/dev/ttyACM0", vid=None, pid=None, description="n/a", product=None, manufacturer=None, serial="E66"):
    p = ListPortInfo(device, skip_link_detection=True)
    p.vid, p.pid, p.description, p.product, p.manufacturer, p.serial_number = vid, pid, description, product, manufacturer, serial
    return p


@pytest.mark.parametrize("info, family, board_id", [
    (port(vid=0x2E8A, pid=0x0005, product="Board in FS mode"), "rp2", "micropython"),
    (port(vid=0x2E8A, pid=0x0003), "rp2040", "bootsel"),
    (port(vid=0x2E8A, pid=0x000F), "rp2350", "bootsel"),
    (port(vid=0x2E8A, pid=0x000A, product="Pico"), "rp2", None),
    (port(vid=0x239A, pid=0x80F4, description="Feather RP2040 - MicroPython"), "rp2", "micropython"),
    (port(vid=0x303A, pid=0x1001), "esp32", None),
    (port(vid=0x303A, pid=0x4001, product="ESP32S3 module - MicroPython"), "esp32", "micropython"),
    # a bridge chip proves a bridge, not an ESP32: an Arduino clone or a Zigbee stick uses the same ones
    (port(vid=0x10C4, pid=0xEA60, product="CP2102 USB to UART"), None, None),
    (port(vid=0x10C4, pid=0xEA70, product="CP2105 Dual USB to UART"), None, None),
    (port(vid=0x1A86, pid=0x7523, description="USB2.0-Serial"), None, None),
    (port(vid=0x1A86, pid=0x55D3, description="USB Single Serial"), None, None),
    (port(vid=0x0403, pid=0x6001, product="FT232R USB UART"), None, None),
    # CircuitPython under Adafruit's ids is not MicroPython: listed as what it is, never followed
    (port(vid=0x239A, pid=0x80F4, description="Feather RP2040 - CircuitPython CDC control"), "rp2", "circuitpython"),
    (port(vid=0x239A, pid=0x8120, product="Feather ESP32-S2", manufacturer="Adafruit",
          description="CircuitPython CDC control"), None, "circuitpython"),
    (port(vid=0x239A, pid=0x80F4, product="Feather RP2040"), "rp2", None),  # firmware unknown: not followed
])
def test_classify_says_only_what_the_ids_prove(info, family, board_id):
    b = detect.classify(info)
    assert b is not None and (b.kind, b.family, b.board_id, b.path, b.serial_number) == \
        ("serial", family, board_id, "/dev/ttyACM0", "E66")


@pytest.mark.parametrize("info", [
    port(vid=0x046D, pid=0xC52B, description="Logitech receiver"),
    port(device="/dev/ttyS0", description="ttyS0"),  # a built-in UART: no USB ids
    port(device="/dev/ttyS1", description="pico"),  # no ids: the text alone is not enough
])
def test_classify_ignores_other_ports(info):
    assert detect.classify(info) is None


def cfg_for(tmp_path, **usb):
    return config.parse({"usb": {"drive_roots": str(tmp_path / "media"), **usb}})


def test_scan_finds_bootsel_drives_and_extra_ports(tmp_path):
    make_drive(tmp_path / "media" / "op" / "RPI-RP2")
    make_drive(tmp_path / "media" / "RP2350", "rp2350")
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "pico-ABC123").symlink_to("/dev/null")
    (tmp_path / "links" / "pico-GONE").symlink_to(tmp_path / "nothing")  # unplugged: dangling link
    boards = detect.scan(cfg_for(tmp_path, extra_ports=str(tmp_path / "links" / "pico-*")))
    assert [(b.kind, os.path.basename(b.path), b.family, b.board_id, b.serial_number) for b in boards] == [
        ("bootsel", "RP2350", "rp2350", "RP2350", None),
        ("bootsel", "RPI-RP2", "rp2040", "RPI-RP2", None),
        ("serial", "pico-ABC123", "rp2", "micropython", "ABC123"),
    ]
    assert boards[0].to_json()["kind"] == "bootsel"


def test_bad_poll_interval_is_refused(tmp_path):
    with pytest.raises(BadInput, match="usb.poll_s"):
        detect.scan(cfg_for(tmp_path, poll_s=0))


@pytest.mark.skipif(not HAVE_MP, reason="MicroPython unix port not installed")
def test_watch_sees_insertion_and_removal_within_a_second(tmp_path):
    links = tmp_path / "links"
    links.mkdir()
    cfg = cfg_for(tmp_path, extra_ports=str(links / "pico-*"), poll_s=0.1)
    stop = threading.Event()
    seen: list[tuple[float, str, str]] = []

    def follow():
        for change in detect.watch(cfg, stop):
            now = time.monotonic()
            seen.extend((now, "+", b.kind) for b in change.added)
            seen.extend((now, "-", b.kind) for b in change.removed)

    t = threading.Thread(target=follow)
    t.start()
    try:
        time.sleep(0.3)
        vp = VirtualPico(tmp_path / "flash", serial="S1", link_dir=links)
        t_plug = time.monotonic()
        vp.replug()
        t_drive = time.monotonic()
        make_drive(tmp_path / "media" / "RPI-RP2")
        time.sleep(1.0)
        t_unplug = time.monotonic()
        vp.stop()
        shutil.rmtree(tmp_path / "media" / "RPI-RP2")
        time.sleep(1.0)
    finally:
        stop.set()
        t.join(10)
        assert not t.is_alive(), "the watcher did not stop within 10 s"
    events = {(sign, kind): at for at, sign, kind in seen}
    assert events[("+", "serial")] - t_plug < 1.0 and events[("+", "bootsel")] - t_drive < 1.0
    assert events[("-", "serial")] - t_unplug < 1.0 and events[("-", "bootsel")] - t_unplug < 1.0
    assert len(seen) == 4


def test_wait_for_returns_a_board_that_appears(tmp_path):
    cfg = cfg_for(tmp_path, poll_s=0.05)
    threading.Timer(0.2, make_drive, args=(tmp_path / "media" / "RPI-RP2",)).start()
    found = detect.wait_for(cfg, lambda b: b.kind == "bootsel", timeout=3)
    assert found is not None and found.board_id == "RPI-RP2"
    assert detect.wait_for(cfg, lambda b: b.kind == "serial", timeout=0.1) is None


def test_udev_rules_cover_the_ids_detection_knows():
    import re
    from pathlib import Path

    rules = (Path(__file__).resolve().parents[1] / "configs" / "udev" / "99-picoctl.rules").read_text()
    lines = [line for line in rules.splitlines() if line.strip() and not line.startswith("#")]
    ids = set()
    for line in lines:
        assert 'GROUP="picoctl"' in line and 'MODE="0660"' in line, line
        vid = re.search(r'ATTRS\{idVendor\}=="([0-9a-f]{4})"', line)
        pid = re.search(r'ATTRS\{idProduct\}=="([0-9a-f]{4})"', line)
        assert vid, line
        ids.add((int(vid.group(1), 16), int(pid.group(1), 16) if pid else None))
        if 'SUBSYSTEM=="tty"' in line:
            assert re.search(r'SYMLINK\+="(pico|esp|usbserial)-\$env\{ID_SERIAL_SHORT\}"', line), line
    wanted = {(0x2E8A, detect.PID_MICROPYTHON), *((0x2E8A, p) for p in detect.PID_BOOTSEL),
              *detect.BRIDGE_IDS, (detect.ESPRESSIF_VID, None)}
    assert ids == wanted


def test_bridge_ports_name_their_chip():
    b = detect.classify(port(vid=0x1A86, pid=0x55D3))
    assert b is not None and b.description.startswith("CH343 USB-serial bridge")
