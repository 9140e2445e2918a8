"""Exceptions shared by every layer; the CLI maps them to exit codes."""


class PicoctlError(Exception):
    """An operation failed (exit code 1)."""

    exit_code = 1


class BadInput(PicoctlError):
    """The user's input or a file given to us is wrong (exit code 2)."""

    exit_code = 2


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds as Ctrl-C does (exit code 143)."""
