"""The shapes the client holds the hub's answers to (picoctl.answers): the real hub's answers on every
route have them, and an answer of another shape is named in one line that says where and how."""

from __future__ import annotations

import httpx
import pytest

from conftest import Hub
from picoctl import answers
from picoctl.answers import NUMBER, Null, mismatch
from picoctl.client import Call, _parse
from picoctl.errors import UnexpectedAnswer
from picoctl.sim.fleet import SimDevice

CRASH = {"type": "MemoryError", "message": "memory allocation failed", "boot": 2, "reset_cause": "soft",
         "traceback": 'Traceback (most recent call last):\n  File "app/main.py", line 3\n'}


def test_every_answer_of_the_real_hub_has_its_shape(hub: Hub) -> None:
    """The client checks each answer (HubClient raises UnexpectedAnswer): a shape the hub does not keep
    to fails here, on the hub as it is."""
    c = hub.client
    assert c.health()
    hub.publish(hub.build_release("1.1.0", {"main.py": b"print('v2')\n"}))
    sim = SimDevice("gh-01", hub.register("gh-01", "picow", "canary"), last_error=CRASH)
    hub.register("gh-02")
    with httpx.Client(base_url=hub.url, timeout=10) as http:
        sim.heartbeat(http)
        c.start_rollout("picow", "1.1.0", [{"name": "canary", "channel": "canary"}], 1, 0)
        offer = sim.check(http)
        assert offer is not None
        sim.status(http, offer, "rolled_back", "1.0.0", "not confirmed", error=CRASH)
    rollouts = c.rollouts()
    assert rollouts[0]["failures"] and c.rollout(rollouts[0]["id"])["state"] == "halted"
    assert c.devices()[0]["offer"] and c.device("gh-01")["heartbeats"] and c.history(limit=5)
    assert c.readings("gh-01") and c.releases("picow")[0]["version"] == "1.1.0"
    assert c.device_logs("gh-01")["lines"] == [] and c.request_log("gh-01", seconds=5)["log_until"]
    c.check_now("gh-01")
    c.set_channel("gh-01", "stable")
    c.add_history({"actor": "pi@test", "kind": "pi_deploy", "result": "ok", "detail": ""})
    assert c.rollout_action(rollouts[0]["id"], "resume", "fixed")
    assert c.remove_device("gh-02")["id"] == "gh-02"


@pytest.mark.parametrize(("value", "shape", "said"), [
    ({"id": "gh-01"}, [answers.DEVICE], "the answer: expected a list of objects, got an object"),
    (["gh-01"], [answers.DEVICE], "[0]: expected an object, got a string"),
    ([{"id": "gh-01"}], [answers.DEVICE], "[0]: no field 'type'"),
    ([{"id": 1.5, "at": "noon"}], [answers.EVENT], "[0].id: expected an integer, got a number"),
    ([{"id": 1, "at": "noon"}], [{"at": NUMBER}], "[0].at: expected a number, got a string"),
    ({"at": True}, {"at": NUMBER}, "at: expected a number, got a boolean"),
    ({"offer": {"version": 3}}, {"offer": Null({"version": str})}, "offer.version: expected a string, got a number"),
    ({"offer": "1.1.0"}, {"offer": Null({"version": str})}, "offer: expected an object or null, got a string"),
    ({"keys": 1.5}, {"keys": Null(int)}, "keys: expected an integer or null, got a number"),
    ({"rows": [[1]]}, {"rows": [[str]]}, "rows[0][0]: expected a string, got a number"),
])
def test_a_departure_is_said_where_and_how(value: object, shape: answers.Shape, said: str) -> None:
    assert mismatch(value, shape) == said


def test_an_answer_that_fits_passes_with_its_extra_fields() -> None:
    assert mismatch([{"id": 1, "at": 2.5, "new": "field"}], [{"id": int, "at": NUMBER}]) is None
    assert mismatch({"offer": None, "keys": None}, {"offer": Null({"v": str}), "keys": Null(int)}) is None


def test_the_client_names_the_route_and_the_departure() -> None:
    request = httpx.Request("GET", "http://hub/api/v1/devices")
    wrong = httpx.Response(200, json={"devices": []}, request=request)
    with pytest.raises(UnexpectedAnswer, match=r"^hub answered GET /api/v1/devices with an unexpected shape: "
                                                r"the answer: expected a list of objects, got an object$"):
        _parse(wrong, wrong.content, Call("GET", "/api/v1/devices", answer=[answers.DEVICE]))
