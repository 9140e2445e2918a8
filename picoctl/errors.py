"""Exceptions shared by every layer; the CLI maps them to exit codes."""


class PicoctlError(Exception):
    """An operation failed (exit code 1)."""

    exit_code = 1


class BadInput(PicoctlError):
    """The user's input or a file given to us is wrong (exit code 2)."""

    exit_code = 2


class UnexpectedAnswer(PicoctlError):
    """The hub answered a route with JSON of another shape than that route's (another version, or not
    the hub at all): `hub answered GET /api/v1/devices with an unexpected shape: <where and how>`."""

    def __init__(self, method: str, path: str, detail: str) -> None:
        super().__init__(f"hub answered {method} {path} with an unexpected shape: {detail}")


class OutOfBounds(PicoctlError):
    """A fetch or a call to the hub not done within its bound (picoctl.fetch_bounds), or an answer longer
    than its cap."""


class Unreachable(PicoctlError):
    """No answer from the hub at `url`; `cause` says why (refused, timed out, ...). The message names
    where the URL came from: after `serve --port 18471` it is still hub.public_url's port; a certificate
    not trusted, how to trust it."""

    def __init__(self, url: str, cause: str) -> None:
        if "CERTIFICATE_VERIFY_FAILED" in cause:
            super().__init__(f"hub at {url} not trusted: {cause} (a self-signed hub is trusted once "
                             f"hub.tls_cert in fleet.toml names its certificate)")
        else:
            super().__init__(f"hub not reachable at {url}: {cause} (this URL is $PICOCTL_HUB_URL, "
                             f"else hub.public_url in fleet.toml: set either to where the hub listens)")
        self.url, self.cause = url, cause


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds as Ctrl-C does (exit code 143)."""
