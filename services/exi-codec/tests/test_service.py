"""The codec as an MQTT service (real mosquitto, the service in its own process): replies, errors as replies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from ccsbus_exi.service import handle

SESSION_SETUP_REQ = "809a004011d019231636c790f800"


def test_handle_decodes_and_encodes():
    reply = handle({"id": 7, "op": "decode", "schema": "din", "hex": SESSION_SETUP_REQ}, 65536)
    assert reply["ok"] and reply["id"] == 7
    assert reply["tree"]["V2G_Message"]["Body"]["SessionSetupReq"]["EVCCID"] == "48C58DB1E43E"
    back = handle({"id": 8, "op": "encode", "schema": "din", "tree": reply["tree"]}, 65536)
    assert back == {"id": 8, "ok": True, "hex": SESSION_SETUP_REQ}


@pytest.mark.parametrize(
    ("request_", "name", "text"),
    [
        ({"op": "decode", "schema": "din17", "hex": "00"}, "schema", "not one of apphand, din, iso2"),
        ({"op": "decode", "schema": "din", "hex": "zz"}, "request", "not hexadecimal"),
        ({"op": "decode", "schema": "din"}, "request", "needs a 'hex' string"),
        ({"op": "squash", "schema": "din"}, "request", "not decode or encode"),
        ({"op": "decode", "schema": "din", "hex": "809a"}, "exi", ""),
        ({"op": "encode", "schema": "iso2", "tree": {"V2G_Message": {"Nonsense": {}}}}, "exi", ""),
        ({"op": "decode", "schema": "din", "hex": "00" * 100}, "request", "longer than 64 bytes"),
    ],
)
def test_handle_reports_errors_as_replies(request_, name, text):
    reply = handle({"id": "x", **request_}, 64)
    assert reply["ok"] is False and reply["id"] == "x"
    assert reply["error"]["name"] == name
    assert text in reply["error"]["message"]
    if name == "exi":
        assert reply["error"]["code"] > 0 and reply["error"]["offset"] is not None


@pytest.fixture
def exi_service(mosquitto):
    env = {**os.environ, "CCSBUS__BROKER__URL": mosquitto.url}
    proc = subprocess.Popen([sys.executable, "-m", "ccsbus", "run", "exi"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield proc
    proc.send_signal(signal.SIGTERM)
    proc.wait(5)


def test_service_round_trip_and_errors_over_mqtt(mosquitto, exi_service, probe_factory):
    probe = probe_factory(mosquitto.port)
    probe.subscribe("pyPlc/#")
    probe.wait_payload("pyPlc/exi/status", b"online", timeout=15)
    reply_to = "exi/reply/test-1"
    probe.publish("pyPlc/exi/request", json.dumps(
        {"id": "a", "reply_to": reply_to, "op": "decode", "schema": "din", "hex": SESSION_SETUP_REQ}))
    probe.publish("pyPlc/exi/request", json.dumps(
        {"id": "b", "reply_to": reply_to, "op": "decode", "schema": "din", "hex": "80"}))
    replies = {}
    for _ in range(2):
        _, payload = probe.wait_for(lambda t, p: t == f"pyPlc/{reply_to}" and json.loads(p)["id"] not in replies)
        body = json.loads(payload)
        replies[body["id"]] = body
    assert replies["a"]["ok"] and "SessionSetupReq" in replies["a"]["tree"]["V2G_Message"]["Body"]
    assert replies["b"]["ok"] is False and replies["b"]["error"]["name"] == "exi"
    # no reply topic: the only place to say so is the service's error topic
    probe.publish("pyPlc/exi/request", b'{"id": 1, "op": "decode"}')
    _, payload = probe.wait_for(lambda t, p: t == "pyPlc/exi/error")
    assert "reply_to" in json.loads(payload)["reason"]
    probe.publish("pyPlc/exi/request", b"not json")
    _, payload = probe.wait_for(lambda t, p: t == "pyPlc/exi/error" and b"not JSON" in p)
    assert exi_service.poll() is None
