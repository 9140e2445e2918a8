"""Where the code that picoctl puts on other machines is: the boards' code and the example Pi app.

`picoctl/_bundled/` links to the checkout's `device_code/` and `examples/`, and a wheel holds copies
of them there, so an editable install and a plain `pip install` find them in the same place.
"""

from pathlib import Path

BUNDLED = Path(__file__).parent / "_bundled"
DEVICE_CODE = BUNDLED / "device_code"
EXAMPLES = BUNDLED / "examples"
PICO_APP = DEVICE_CODE / "pico" / "main.py"  # a USB Pico's app: readings and heartbeats on its console, no agent
