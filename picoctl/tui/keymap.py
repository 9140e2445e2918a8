"""Every key of the TUI, each a Binding with an id (remappable through App.set_keymap) and a description.

k9s habits: `?` help, `/` filter, ctrl+p (or `:`) commands, enter opens, esc backs out, q quits,
j/k beside the arrows, `[` `]` and 1-5 between screens. Lowercase letters are verbs on the selection.
"""

from __future__ import annotations

from textual.binding import Binding

SCREENS = (("fleet", "Fleet"), ("releases", "Releases"), ("history", "History"), ("pi", "Pi"), ("usb", "USB"))

APP = [
    Binding("question_mark", "help", "Help", id="app.help", tooltip="every key of this screen and the app"),
    Binding("q", "quit", "Quit", id="app.quit", tooltip="leave picoctl"),
    # priority: it quits from forms, confirmations and Help too, where an input would take it as copy
    Binding("ctrl+c", "quit", "Quit", show=False, priority=True, id="app.quit_anywhere", tooltip="leave picoctl, from anywhere"),
    Binding("colon,ctrl+p", "command_palette", "Commands", show=False, id="app.commands",
            tooltip="search every action by name"),
    Binding("left_square_bracket", "cycle_screen(-1)", "Prev", show=False, id="app.prev_screen",
            tooltip="previous screen"),
    Binding("right_square_bracket", "cycle_screen(1)", "Next", show=False, id="app.next_screen",
            tooltip="next screen"),
    *(Binding(str(i), f"show('{mode}')", title, show=False, id=f"app.screen.{mode}", tooltip=f"the {title} screen")
      for i, (mode, title) in enumerate(SCREENS, 1)),
]

TABLE = [
    Binding("j", "cursor_down", "Down", show=False, id="table.down", tooltip="next row"),
    Binding("k", "cursor_up", "Up", show=False, id="table.up", tooltip="previous row"),
    Binding("g", "scroll_top", "Top", show=False, id="table.top", tooltip="first row"),
    Binding("G", "scroll_bottom", "Bottom", show=False, id="table.bottom", tooltip="last row"),
]

FILTER = Binding("slash", "filter", "Filter", id="screen.filter", tooltip="type to filter the rows; esc clears")

FLEET = [
    Binding("enter", "open_device", "Open", id="fleet.open", tooltip="the selected device's history and actions"),
    FILTER,
    Binding("s", "sort_next", "Sort", id="fleet.sort", tooltip="sort by the next column"),
    Binding("S", "sort_reverse", "Reverse", show=False, id="fleet.sort_reverse", tooltip="reverse the sort order"),
    Binding("c", "check_now", "Check now", id="fleet.check_now",
            tooltip="the selected device checks for an update at its next heartbeat"),
    Binding("l", "log", "Log", id="fleet.log", tooltip="the selected Pico W's output over the air"),
]

DEVICE = [
    Binding("escape", "back", "Back", id="device.back", tooltip="back to the fleet"),
    Binding("c", "check_now", "Check now", id="device.check_now",
            tooltip="the device checks for an update at its next heartbeat"),
    Binding("m", "move_channel", "Move channel", id="device.move_channel",
            tooltip="move the device between the canary and stable channels"),
    Binding("x", "remove", "Remove", id="device.remove",
            tooltip="decommission the device: its key stops working, its history stays"),
    Binding("l", "log", "Log", id="device.log", tooltip="the Pico W's output over the air"),
]

DEVICE_LOG = [
    Binding("escape", "back", "Back", id="device_log.back", tooltip="close the log"),
    Binding("space", "pause", "Pause", id="device_log.pause", tooltip="pause or follow the log"),
    Binding("x", "clear", "Clear", show=False, id="device_log.clear", tooltip="clear the log view"),
]

RELEASES = [
    Binding("n", "new_canary", "Canary", priority=True, id="releases.canary", tooltip="start a rollout of a release, canary first"),
    Binding("s", "smoke", "Smoke", id="releases.smoke",
            tooltip="boot the selected picow release on a virtual Pico W with the canaries' readings"),
    Binding("p", "rollout('promote')", "Promote", id="releases.promote", tooltip="move the active rollout to its next stage"),
    Binding("h", "rollout('halt')", "Halt", id="releases.halt", tooltip="stop new offers of the active rollout at once"),
    Binding("r", "rollout('resume')", "Resume", id="releases.resume", tooltip="resume the halted rollout"),
    Binding("b", "rollout('rollback')", "Roll back", id="releases.rollback",
            tooltip="offer the previous release to every device that took this one"),
    Binding("w", "why", "Why", id="releases.why",
            tooltip="the first device that failed the rollout: its error and traceback"),
    Binding("x", "remove_release", "Remove", show=False, id="releases.remove",
            tooltip="remove the selected release from the hub (refused while a device or rollout needs it)"),
]

HISTORY = [
    Binding("enter", "open_event", "Details", id="history.open",
            tooltip="the selected event in full: actor, time, the whole detail"),
    FILTER,
    Binding("f", "toggle_follow", "Follow", id="history.follow", tooltip="keep the newest event in view"),
]

PI = [
    Binding("d", "deploy", "Deploy", priority=True, id="pi.deploy", tooltip="deploy a Pi release (folder, meta.json or URL)"),
    Binding("b", "rollback", "Roll back", id="pi.rollback", tooltip="switch back to the previous release"),
    Binding("u", "refresh", "Refresh", id="pi.refresh", tooltip="read the releases and the health check again"),
]

USB = [
    Binding("f", "flash", "Flash", priority=True, id="usb.flash", tooltip="copy a UF2 image onto the selected BOOTSEL drive"),
    Binding("p", "push", "Push", priority=True, id="usb.push", tooltip="push a release folder to the selected board over serial"),
    Binding("v", "provision", "Provision", priority=True, id="usb.provision",
            tooltip="provision the selected board as a Pico W of the fleet"),
    Binding("l", "log", "Log", priority=True, id="usb.log", tooltip="follow the selected board's serial console (or any port)"),
    Binding("space", "pause", "Pause", id="usb.pause", tooltip="pause the serial log (it keeps reading)"),
    Binding("space", "follow", "Follow", id="usb.follow", tooltip="follow the serial log again"),
    Binding("slash", "search", "Search", priority=True, id="usb.search", tooltip="show only log lines holding a text"),
    # left out of the footer so that it fits 80 columns; `?`, the palette and the log's own line name them
    Binding("x", "clear", "Clear", show=False, id="usb.clear", tooltip="clear the serial log view"),
    Binding("w", "save", "Save", show=False, priority=True, id="usb.save", tooltip="save the serial log to a file"),
]

# The keys above with priority=True open a form or a prompt. They act as soon as the app reads them, so
# the keys typed after one in the same burst (a paste, a laggy link) go to the form, not to the screen
# beneath; none of those screens has an input of its own that would want the letter.
MODAL = [Binding("escape", "cancel", "Cancel", id="modal.cancel", tooltip="close without doing anything")]

BY_MODE = {"fleet": FLEET, "releases": RELEASES, "history": HISTORY, "pi": PI, "usb": USB}
