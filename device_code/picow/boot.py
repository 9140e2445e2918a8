# boot.py: start the app, with recover.py run before it (finish or undo an interrupted switch, count
# trial boots, roll back) and again should the app fail. This file's code stays loaded as long as the
# app runs (the app runs from its import), so it is kept to these lines and recover.py is dropped
# before the app starts. See docs/device-agent.md.
import gc
import sys

import recover

phase = recover.start()
del sys.modules["recover"]
recover = None
gc.collect()  # now, while nothing on the stack can still point into its code
try:
    import main  # noqa: F401  the app runs its loop from here
except Exception as exc:
    del sys.path[0]  # app/, which start() put first: nothing of it may stand in for recover.py
    import recover

    recover.failed(exc, phase)
