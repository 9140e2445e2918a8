"""The board's flash for the rig, run by the MicroPython unix port (nor_boot.py imports it; never
imported by picoctl itself): a LittleFS2 block device on a host file that behaves like NOR flash.

An erase sets a 4096-byte block to 0xFF, a program can only clear bits, LittleFS programs 256 bytes
at a time as on the rp2 port. On a board the block device is C; here it is Python in the board's own
heap, so it is small and allocates nothing once made: LittleFS may flush a file from a garbage
collector's finaliser, when the heap is locked. Its buffers are made here, its counts kept in
preallocated bytes (PICOW_FLASH_OPS: three little-endian u32, operations, bytes programmed, blocks
erased, since the rig zeroed the file), and the line of a power cut is written before it happens.

PICOW_FLASH_CUT=N: the power goes at operation N of that count: the operation is torn (a program
lands only part of its bytes, an erase only part of its block), nothing after it reaches the flash,
the board prints `@flash cut <op> <kind>` and waits for the rig's SIGKILL.
"""

import os
import struct
import sys
import time

import micropython
import vfs

BLOCK = 4096
PROG = 256


class NorFlash:
    """LittleFS's block device (the extended interface: reads and programs at an offset, erase ioctl);
    its fields are set by mount(), which is dropped once it has run. Each helper method would cost the
    board's heap a function object, so the program and the erase are written out whole."""

    @micropython.native  # machine code, outside the heap: on a board the block device is C
    def readblocks(self, block, buf, off=0):
        self.f.seek(block * BLOCK + off)
        self.f.readinto(buf)

    @micropython.native  # machine code, outside the heap: on a board the block device is C
    def writeblocks(self, block, buf, off=0):
        self.ops += 1
        page, f = self.page, self.f
        pos = block * BLOCK + off
        n = len(buf)
        torn = self.ops == self.cut_at
        erased = not torn
        f.seek(pos)
        i = 0
        while erased and i < n:
            f.readinto(page)
            erased = page.count(b"\xff") == PROG
            i += PROG
        if erased:
            f.seek(pos)
            f.write(buf)
        else:  # NOR: a program only clears bits; at the cut only a prefix lands
            one = self.one
            end = (self.ops * 7919) % n if torn else n
            i = 0
            while i < end:
                f.seek(pos + i)
                f.readinto(page)
                f.seek(pos + i)
                j = 0
                while j < PROG and i < end:
                    one[0] = page[j] & buf[i]
                    f.write(one)
                    i += 1
                    j += 1
        self._done(n, "program")

    @micropython.native  # machine code, outside the heap: on a board the block device is C
    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.count
        if op == 5:  # block size
            return BLOCK
        if op == 6:  # erase
            self.ops += 1
            n = (self.ops * 7919) % BLOCK if self.ops == self.cut_at else BLOCK
            page, f = self.page, self.f
            for i in range(PROG):
                page[i] = 0xFF
            f.seek(arg * BLOCK)
            while n >= PROG:
                f.write(page)
                n -= PROG
            one = self.one
            one[0] = 0xFF
            while n > 0:
                f.write(one)
                n -= 1
            self.erased += 1
            self._done(0, "erase")
        return 0

    @micropython.native  # machine code, outside the heap: on a board the block device is C
    def _done(self, programmed, kind):
        self.programmed += programmed
        if self.ops_file:
            struct.pack_into("<III", self.counts, 0, self.ops, self.programmed, self.erased)
            self.ops_file.seek(0)
            self.ops_file.write(self.counts)
        if self.ops == self.cut_at:
            self.f.close()  # nothing more reaches the flash
            sys.stdout.write(self.cut_line)
            sys.stdout.write(kind)
            sys.stdout.write("\n")
            while True:
                time.sleep(1)  # the power is gone: the rig's SIGKILL ends this


def mount():
    """Mount the image at /flash as the rp2 port's _boot.py does and make it the working folder."""
    dev = NorFlash()
    dev.f = open(os.getenv("PICOW_FLASH"), "r+b")
    dev.count = dev.f.seek(0, 2) // BLOCK
    dev.counts = bytearray(12)
    ops_path = os.getenv("PICOW_FLASH_OPS")
    dev.ops_file = open(ops_path, "r+b") if ops_path else None
    if dev.ops_file:
        dev.ops_file.readinto(dev.counts)
    dev.ops, dev.programmed, dev.erased = struct.unpack("<III", dev.counts)
    dev.cut_at = int(os.getenv("PICOW_FLASH_CUT") or 0)
    dev.cut_line = "@flash cut %d " % dev.cut_at
    dev.page = bytearray(PROG)  # what a page holds before a program, or an erased page to write
    dev.one = bytearray(1)
    try:
        fs = vfs.VfsLfs2(dev, progsize=PROG)
    except OSError:
        print("@flash formatted")
        vfs.VfsLfs2.mkfs(dev, progsize=PROG)
        fs = vfs.VfsLfs2(dev, progsize=PROG)
    vfs.mount(fs, "/flash")
    os.chdir("/flash")
