"""A board's power-on, run by the MicroPython unix port (never imported by picoctl itself).

The board's whole flash is a LittleFS2 image (a host file) on a block device that behaves like NOR
flash (nor_flash.py). This mounts it at /flash as the rp2 port's _boot.py does (formatting a
filesystem that does not mount, which on a board loses everything: the rig reports it as
`@flash formatted`), makes it the working folder and runs boot.py (or PICOW_RUN, a script on the
host, for tests of single modules and for filling the flash).

Only the block device stays in the board's heap: the mounting code is a module dropped before boot.py
starts, and this one is kept to a few lines, since its code stays loaded while the board runs.
Environment (set by picoctl.sim.board): PICOW_FLASH, the image; PICOW_FLASH_OPS, the operation
counts; PICOW_FLASH_CUT, the operation at which the power goes (see nor_flash.py); PICOW_RUN.
"""

import os
import sys

import nor_flash

nor_flash.mount()
del sys.modules["nor_flash"], sys.path[0], nor_flash.mount  # nothing of the rig is importable on the board
nor_flash = None
if "" not in sys.path:
    sys.path.insert(0, "")
if os.getenv("PICOW_RUN"):
    with open(os.getenv("PICOW_RUN")) as f:
        exec(f.read(), {"__name__": "__main__"})
else:
    __import__("boot")
