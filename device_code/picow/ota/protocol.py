"""The board's side of the wire contract: one home for each fact the agent shares with boot.py and the
hub. It mirrors picoctl/protocol.py (MAX_PENDING is MAX_PENDING_REPORTS there, RESERVED_NAMES is
PICOW_RESERVED_NAMES); boot.py, self-contained on purpose, repeats MAX_PENDING. tests/test_protocol.py
checks all three agree."""

MAX_PENDING = 4  # status reports queued in state.json while the hub cannot be reached
MAX_BODY = 16384  # largest response body the agent reads (an offer with its file list)
MAX_HEADER_LINE = 512  # longest response header line, CRLF included
MAX_HEADERS = 32  # header lines in one response
# First path parts a release may not use: app/ comes first on sys.path (boot.py), so these would be
# imported in place of the agent or of a built-in module it relies on.
RESERVED_NAMES = ("ota", "array", "binascii", "collections", "errno", "gzip", "hashlib", "heapq", "io",
                  "json", "os", "platform", "random", "re", "select", "socket", "ssl", "struct", "time",
                  "zlib")


def reserved(name):
    """True when a release file `name` would shadow the agent or a built-in module it imports."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        dot = first.rfind(".")
        if dot > 0 and first[dot:] in (".py", ".mpy"):
            first = first[:dot]
    return first in RESERVED_NAMES
