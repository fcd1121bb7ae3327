"""Tests for tests/sink/sink.py. Run: python3 -m pytest tests/sink -q"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

SINK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sink.py")
TOKEN = "test-token-123"


@pytest.fixture(scope="module")
def sink():
    env = dict(os.environ, HAVOC_SINK_SLACK_TOKEN=TOKEN)
    proc = subprocess.Popen([sys.executable, SINK, "--port", "0"], stdout=subprocess.PIPE, env=env, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on "), line
        yield line[len("listening on "):]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def clean(sink):
    call(sink, "POST", "/control/reset", b"{}")


def call(base, method, path, body=None, headers=None):
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"null")


def post_message(base, payload, token=TOKEN, form=False):
    headers = {}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    if form:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = urllib.parse.urlencode(payload).encode()
    else:
        headers["Content-Type"] = "application/json; charset=utf-8"
        body = json.dumps(payload).encode()
    return call(base, "POST", "/api/chat.postMessage", body, headers)


def received(base, query=""):
    status, _, items = call(base, "GET", "/received" + query)
    assert status == 200
    return items


def test_post_message_json(sink):
    status, _, body = post_message(sink, {"channel": "#chaos", "text": "experiment deviated",
                                          "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*x*"}}]})
    assert status == 200
    assert body["ok"] is True
    assert body["channel"].startswith("C")
    assert body["ts"] and body["message"]["text"] == "experiment deviated"
    assert body["message"]["blocks"][0]["type"] == "section"
    items = received(sink)
    assert len(items) == 1
    assert items[0]["kind"] == "slack" and items[0]["method"] == "POST"
    assert items[0]["json"]["channel"] == "#chaos"
    assert items[0]["headers"]["authorization"] == "Bearer " + TOKEN
    assert items[0]["outcome"] == "ok" and items[0]["response"]["status"] == 200


def test_post_message_form_and_channel_id(sink):
    status, _, body = post_message(sink, {"channel": "C12345", "text": "hello"}, form=True)
    assert status == 200 and body["ok"] is True and body["channel"] == "C12345"
    assert received(sink)[0]["form"] == {"channel": "C12345", "text": "hello"}


def test_ts_unique(sink):
    a = post_message(sink, {"channel": "#a", "text": "1"})[2]["ts"]
    b = post_message(sink, {"channel": "#a", "text": "2"})[2]["ts"]
    assert float(b) > float(a)


@pytest.mark.parametrize("token", [None, "wrong"])
def test_invalid_auth(sink, token):
    status, _, body = post_message(sink, {"channel": "#a", "text": "x"}, token=token)
    assert status == 200
    assert body == {"ok": False, "error": "invalid_auth"}
    items = received(sink)
    assert items[0]["outcome"] == "invalid_auth"


def test_slack_argument_errors(sink):
    assert post_message(sink, {"text": "x"})[2]["error"] == "channel_not_found"
    assert post_message(sink, {"channel": "#a"})[2]["error"] == "no_text"


def test_webhook_records_everything(sink):
    payload = {"verdict": "deviated", "experiment": "kill-pod"}
    status, _, body = call(sink, "POST", "/webhook/team-a?x=1", json.dumps(payload).encode(),
                           {"Content-Type": "application/json", "X-Havoc-Signature": "abc"})
    assert status == 200 and body == {"ok": True}
    call(sink, "POST", "/webhook/team-b", b"not json", {"Content-Type": "text/plain"})
    items = received(sink)
    assert [i["name"] for i in items] == ["team-a", "team-b"]
    assert items[0]["method"] == "POST" and items[0]["path"] == "/webhook/team-a"
    assert items[0]["query"] == {"x": "1"}
    assert items[0]["headers"]["x-havoc-signature"] == "abc"
    assert items[0]["json"] == payload and json.loads(items[0]["body"]) == payload
    assert items[1]["json"] is None and items[1]["body"] == "not json"
    assert [i["name"] for i in received(sink, "?kind=webhook&name=team-b")] == ["team-b"]


def test_fail_500(sink):
    status, _, _ = call(sink, "POST", "/control/fail", json.dumps({"mode": "500", "count": 2}).encode())
    assert status == 200
    assert post_message(sink, {"channel": "#a", "text": "1"})[0] == 500
    assert call(sink, "POST", "/webhook/w", b"{}")[0] == 500
    assert post_message(sink, {"channel": "#a", "text": "3"})[0] == 200
    items = received(sink)
    assert [i["outcome"] for i in items] == ["injected_500", "injected_500", "ok"]
    assert [i["response"]["status"] for i in items] == [500, 500, 200]


def test_fail_ratelimited(sink):
    call(sink, "POST", "/control/fail", json.dumps({"mode": "ratelimited", "count": 1}).encode())
    status, headers, body = post_message(sink, {"channel": "#a", "text": "1"})
    assert status == 429
    assert headers.get("Retry-After") == "1"
    assert body == {"ok": False, "error": "ratelimited"}
    assert post_message(sink, {"channel": "#a", "text": "2"})[2]["ok"] is True
    assert [i["outcome"] for i in received(sink)] == ["injected_ratelimited", "ok"]


def test_fail_delay(sink):
    call(sink, "POST", "/control/fail", json.dumps({"mode": "delay", "count": 1, "seconds": 0.5}).encode())
    start = time.monotonic()
    assert call(sink, "POST", "/webhook/slow", b"{}")[0] == 200
    assert time.monotonic() - start >= 0.5


def test_bad_control(sink):
    assert call(sink, "POST", "/control/fail", json.dumps({"mode": "nope"}).encode())[0] == 400


def test_delete_received(sink):
    call(sink, "POST", "/webhook/w", b"{}")
    assert len(received(sink)) == 1
    assert call(sink, "DELETE", "/received")[0] == 200
    assert received(sink) == []


def test_health(sink):
    assert call(sink, "GET", "/health")[2] == {"ok": True}
