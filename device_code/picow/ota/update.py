"""An update's staging into app.new, for the agent (ota/agent.py): every file verified by its sha256,
reused, copied from the running app or downloaded (resumed after a drop), every ending reported.

Loaded once an offer is verified and dropped when the update job ends. This module only orders the
staging's parts, each loaded for its part and dropped after (agent.duty), so that while bytes flow
only the download loop and the HTTP client hold code in RAM: ota/reuse.py (what app.new or the running
app already holds), ota/download.py (the downloads), ota/outcome.py (`staged`, or the failure reported).
Every function takes the Agent first.
"""

from ota import fs, hw
from ota.agent import NEW, duty


class Failed(Exception):
    """An update that cannot go on; `transient` when retrying later may succeed."""

    def __init__(self, message, transient):
        super().__init__(message)
        self.transient = transient


class FlashError(Exception):
    """A flash operation failed while a download was streaming (args[0]: the OSError), told apart
    from the network's errors, which are resumed."""


def run(a, offer):
    """The update duty: stage `offer` in app.new; on success the state says `staged` and the switch
    waits for the app's consent (True). Every other ending is reported and recorded as `failed`.

    Files already staged for the same version (before a power cut or a dropped connection,
    possibly under an earlier seq) are kept: each is verified by its sha256 before reuse."""
    current = a.st.get("offer")
    if not current or current.get("version") != offer["version"]:
        fs.rmtree(NEW)
        hw.step("cleared app.new")
    a.st["offer"] = {"seq": offer["seq"], "version": offer["version"], "rollout_id": offer.get("rollout_id")}
    a.st["phase"] = "downloading"
    a.save()
    hw.step("phase downloading")
    files = offer["files"]
    offer = None
    yield from a.report("downloading", "%d files" % len(files))
    failure = None
    try:
        fs.makedirs(NEW)
        todo = yield from duty("reuse", a, files)
        yield from duty("download", a, todo)
        todo = None
    except Exception as exc:  # whatever it is: still an update that ended, and the hub hears of it
        failure = exc
    return (yield from duty("outcome", a, files, failure))
