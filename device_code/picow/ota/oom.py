"""Running out of memory while an offer is verified (ota/check.py) or staged (ota/outcome.py). On a
board that is almost always its heap at that moment (no free piece large enough), not the release:
a transient failure, which keeps what was staged for the hub's next offer of the same version. The
`oom_tries`-th in a row for one version is final, so a release that never fits the board still fails
its rollout. Loaded for such a failure only, and dropped after (ota.call)."""

from ota.agent import describe


def ending(a, version, doing, exc):
    """(reason, transient) of running out of memory while `doing` (a phrase), counted in the state
    (the caller saves it): the times in a row for `version`, forgotten once the last of them is final."""
    n, counted = a.st.get("oom") or (0, None)
    n = n + 1 if counted == version else 1
    tries = a.cfg["oom_tries"]
    if n < tries:
        a.st["oom"] = [n, version]
    else:
        a.st.pop("oom", None)
    return ("out of memory while %s (try %d of %d, %s): %s" % (doing, n, tries, "retrying" if n < tries else "given up",
                                                              describe(exc)), n < tries)
