"""Pi self-deploy: fetch, verify, unpack into releases/<version>/, switch `current`, restart, health check.

The functions here are the whole API; the CLI (commands/pi.py) and the TUI only present them.
"""

from .deploy import deploy, published_source, rollback, update
from .events import DeployResult, local_actor
from .status import PiStatus, status

__all__ = ["DeployResult", "PiStatus", "deploy", "local_actor", "published_source", "rollback", "status", "update"]
