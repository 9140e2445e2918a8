"""picoctl.sim.local_hub.free_port: a port chosen for a server that is not bound yet (the demo's hub
while its Pi app's port is chosen) is never handed out again."""

from __future__ import annotations

from picoctl.sim.local_hub import free_port


def test_no_port_is_handed_out_twice_in_a_process() -> None:
    ports = [free_port() for _ in range(3000)]
    assert len(set(ports)) == len(ports)
