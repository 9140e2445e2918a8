"""The picoctl terminal UI (Textual): fleet, device, releases and rollouts, history, Pi and USB screens."""
