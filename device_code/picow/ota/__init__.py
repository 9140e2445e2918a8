# The agent's transfer buffer (ota.protocol.CHUNK bytes), made when the package is first imported
# (boot.py's first import): later, with the agent's code loaded, a small heap no longer holds 4 KiB
# in one piece.
BUF = bytearray(4096)
