"""ESP32 flashing through esptool: image checks and connection errors (no ESP32 is attached here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from esptool.bin_image import ELFSection, ESP32FirmwareImage, ESP32S3FirmwareImage

from picoctl.errors import BadInput, PicoctlError
from picoctl.progress import Progress
from picoctl.usb.esp import flash_esp, image_chip
from picoctl.sim.board import find_micropython

HAVE_MP = find_micropython() is not None


def esp_image(path: Path, cls=ESP32FirmwareImage) -> Path:
    """A real ESP image written by esptool's own image writer."""
    img = cls()
    img.segments = [ELFSection(b".dram0.data", 0x3FFB0000, os.urandom(2048), 0)]
    img.entrypoint = 0x40080000
    img.save(str(path))
    return path


def test_image_chip_reads_the_header(tmp_path):
    assert image_chip(esp_image(tmp_path / "a.bin").read_bytes()) == "esp32"
    assert image_chip(esp_image(tmp_path / "b.bin", ESP32S3FirmwareImage).read_bytes(), "esp32s3") == "esp32s3"


@pytest.mark.parametrize("mangle, chip, message", [
    (lambda d: b"\x00" + d[1:], "auto", "magic byte 0xE9"),
    (lambda d: d[:10], "auto", "magic byte 0xE9"),
    (lambda d: d[:60], "auto", "damaged ESP firmware image"),
    (lambda d: d, "esp32c3", "built for esp32, not esp32c3"),
    (lambda d: d, "esp8266", "unknown chip"),
    (lambda d: d[:12] + b"\x63\x00" + d[14:], "auto", "unknown chip id 99"),
])
def test_bad_images_are_refused(tmp_path, mangle, chip, message):
    data = mangle(esp_image(tmp_path / "fw.bin").read_bytes())
    with pytest.raises(BadInput, match=message):
        image_chip(data, chip)


def test_flash_checks_arguments_before_touching_the_port(tmp_path):
    fw = esp_image(tmp_path / "fw.bin")
    with pytest.raises(BadInput, match="cannot read firmware"):
        flash_esp(tmp_path / "missing.bin", "/dev/ttyUSB0", Progress("esp"))
    with pytest.raises(BadInput, match="multiple of 0x1000"):
        flash_esp(fw, "/dev/ttyUSB0", Progress("esp"), address=0x10)
    with pytest.raises(BadInput, match="built for esp32, not esp32s3"):
        flash_esp(fw, "/dev/ttyUSB0", Progress("esp"), chip="esp32s3")
    events = []
    with pytest.raises(PicoctlError, match="no such serial port"):
        flash_esp(fw, str(tmp_path / "ttyUSB9"), Progress("esp", events.append))
    assert events == []  # nothing started


@pytest.mark.skipif(not HAVE_MP, reason="MicroPython unix port not installed")
def test_a_board_that_is_not_an_esp32_gives_a_one_line_error(tmp_path):
    from picoctl.sim.virtual_pico import VirtualPico

    events = []
    with VirtualPico(tmp_path / "flash") as pico:
        with pytest.raises(PicoctlError, match="esptool failed: Failed to connect") as err:
            flash_esp(esp_image(tmp_path / "fw.bin"), pico.port, Progress("esp", events.append), connect_attempts=1)
    assert "\n" not in str(err.value)
    assert events[0].state == "started" and events[-1].state == "failed"
