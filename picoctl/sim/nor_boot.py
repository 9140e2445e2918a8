"""A board's power-on, run by the MicroPython unix port (never imported by picoctl itself).

The board's whole flash is a LittleFS2 image (a host file) on a block device that behaves like NOR
flash: an erase sets a 4096-byte block to 0xFF, a program can only clear bits, LittleFS programs
256 bytes at a time as on the rp2 port. This mounts it at /flash as the rp2 port's _boot.py does
(formatting a filesystem that does not mount, which on a board loses everything: the rig reports it
as `@flash formatted`), makes it the working folder and runs boot.py (or PICOW_RUN, a script on the
host, for tests of single modules and for filling the flash).

Environment (set by picoctl.sim.board):
- PICOW_FLASH: the image; PICOW_FLASH_OPS: a host file counting `ops programmed_bytes erases` since
  the rig zeroed it;
- PICOW_FLASH_CUT=N: the power goes at operation N of that count: the operation is torn (a program
  lands only part of its bytes, an erase only part of its block), nothing after it reaches the flash,
  the board prints `@flash cut <op> <kind>` and waits for the rig's SIGKILL.
"""

import os
import sys

import vfs

BLOCK = 4096
PROG = 256
FF = b"\xff" * PROG  # an erase writes it BLOCK // PROG times: the rig keeps the heap for the board


class NorFlash:
    """LittleFS's block device (the extended interface: reads and programs at an offset, erase ioctl)."""

    def __init__(self, image, ops_path, cut_at):
        self.f = open(image, "r+b")
        self.f.seek(0, 2)
        self.count = self.f.tell() // BLOCK
        self.ops_file = open(ops_path, "r+b") if ops_path else None
        self.ops = self.programmed = self.erased = 0
        if self.ops_file:
            fields = self.ops_file.read().split()
            if len(fields) == 3:
                self.ops, self.programmed, self.erased = int(fields[0]), int(fields[1]), int(fields[2])
        self.cut_at = cut_at

    def readblocks(self, block, buf, off=0):
        self.f.seek(block * BLOCK + off)
        self.f.readinto(buf)

    def writeblocks(self, block, buf, off=0):
        n = self._op(len(buf), "program")
        pos = block * BLOCK + off
        self.f.seek(pos)
        old = self.f.read(n)
        if old.count(b"\xff") == n:
            data = memoryview(buf)[:n]
        else:  # NOR: a program only clears bits
            data = bytearray(buf[:n])
            for i in range(n):
                data[i] &= old[i]
        self.f.seek(pos)
        self.f.write(data)
        self._done(len(buf))

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.count
        if op == 5:  # block size
            return BLOCK
        if op == 6:  # erase
            n = self._op(BLOCK, "erase")
            self.f.seek(arg * BLOCK)
            while n > 0:
                self.f.write(memoryview(FF)[:n])
                n -= PROG
            self.erased += 1
            self._done(0)
        return 0

    def _op(self, n, kind):
        """How many of the operation's `n` bytes reach the flash: all of them but at the cut."""
        self.ops += 1
        if self.ops != self.cut_at:
            return n
        self.cut_kind = kind
        return (self.ops * 7919) % n  # a torn operation: some prefix of it, never all

    def _done(self, programmed):
        self.programmed += programmed
        if self.ops_file:
            self.ops_file.seek(0)
            self.ops_file.write(b"%d %d %d        " % (self.ops, self.programmed, self.erased))
        if self.ops == self.cut_at:
            self.f.close()  # nothing more reaches the flash
            print("@flash cut", self.ops, self.cut_kind)
            while True:
                sys.stdin.readline()  # the power is gone: the rig's SIGKILL ends this


def power_on():
    cut = os.getenv("PICOW_FLASH_CUT")
    dev = NorFlash(os.getenv("PICOW_FLASH"), os.getenv("PICOW_FLASH_OPS"), int(cut) if cut else 0)
    try:
        fs = vfs.VfsLfs2(dev, progsize=PROG)
    except OSError:
        print("@flash formatted")
        vfs.VfsLfs2.mkfs(dev, progsize=PROG)
        fs = vfs.VfsLfs2(dev, progsize=PROG)
    vfs.mount(fs, "/flash")
    os.chdir("/flash")
    del sys.path[0]  # this file's folder: nothing of the rig is importable on the board
    if "" not in sys.path:
        sys.path.insert(0, "")
    script = os.getenv("PICOW_RUN")
    if script:
        with open(script) as f:
            exec(f.read(), {"__name__": "__main__"})
    else:
        __import__("boot")


power_on()
