"""Tests for tests/sink/sink.py. Run: python3 -m pytest tests/sink -q"""

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sink as sink_module  # noqa: E402  (the module under test, for its pure functions)

SINK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sink.py")
TOKEN = "test-token-123"
SECRET = "test-webhook-secret"


@pytest.fixture(scope="module")
def sink():
    env = dict(os.environ, HAVOC_SINK_SLACK_TOKEN=TOKEN, HAVOC_SINK_WEBHOOK_SECRET=SECRET)
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
    assert items[0]["signature"] == "invalid" and items[1]["signature"] == "missing"
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


# --- webhook signatures

def sign(body, t, secret=SECRET):
    """havoc's scheme: t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>."""
    mac = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    return "t=%d,v1=%s" % (t, mac)


def deliver(base, body, signature, name="signed"):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Havoc-Signature"] = signature
    status, _, _ = call(base, "POST", "/webhook/" + name, body, headers)
    return status, received(base, "?kind=webhook&name=" + name)[-1]


def test_the_documented_example_and_the_rust_test_vector():
    # The same vectors as integrations/src/webhook.rs: the two implementations agree.
    assert sign(b"{}", 1774692000, "s3cret") == \
        "t=1774692000,v1=66371cc411fa9ed14057f5c6ee95fd2db62ca7df5b373aace2dbcc449300ab14"
    assert sign(b"what do ya want for nothing?", 1774692000, "Jefe") == \
        "t=1774692000,v1=db5d59363511bad301060ebaff015918371db7fd11cefec43635afe1deff8789"


def test_verify_rules():
    verify = sink_module.verify_signature
    body, t = b'{"verdict":"deviated"}', 1774692000
    header = sign(body, t)
    assert verify(SECRET, header, body, t, 300) is None
    assert verify(SECRET, header, body, t + 300, 300) is None
    assert verify(SECRET, header, body, t - 300, 300) is None
    assert verify(SECRET, header, body, t + 301, 300)[0] == "stale"
    assert verify(SECRET, header, body, t - 301, 300)[0] == "stale"
    assert verify(SECRET, header, b'{"verdict":"passed"}', t, 300)[0] == "mismatch"
    assert verify("other", header, body, t, 300)[0] == "mismatch"
    moved = header.replace("t=%d" % t, "t=%d" % (t + 3600))
    assert verify(SECRET, moved, body, t + 3600, 300)[0] == "mismatch"
    v1 = header.split("v1=")[1]
    assert verify(SECRET, " t=%d , v0=old, v1=%s, v1=%s " % (t, "ab" * 32, v1), body, t, 300) is None
    assert verify(SECRET, "", body, t, 300)[0] == "missing"
    assert verify(SECRET, None, body, t, 300)[0] == "missing"
    for bad in ["sha256=" + "0" * 64, "v1=00", "t=1774692000", "t=-1,v1=00", "t=1e9,v1=00",
                "t=99999999999999999999999,v1=00", "t=1,t=2,v1=00", "t=1774692000;v1=00",
                "t=%d,v1=zz" % t]:
        assert verify(SECRET, bad, body, t, 300)[0] == "malformed", bad


def test_webhook_valid_signature(sink):
    body = b'{"id":"e1","verdict":"deviated"}'
    status, item = deliver(sink, body, sign(body, int(time.time())))
    assert status == 200
    assert item["signature"] == "valid" and "signature_error" not in item
    assert item["outcome"] == "ok"


def test_webhook_tampered_body_or_wrong_secret(sink):
    body = b'{"id":"e1","verdict":"deviated"}'
    now = int(time.time())
    _, item = deliver(sink, b'{"id":"e1","verdict":"passed"}', sign(body, now))
    assert item["signature"] == "invalid"
    assert "does not match" in item["signature_error"]
    _, item = deliver(sink, body, sign(body, now, "another-secret"))
    assert item["signature"] == "invalid"
    _, item = deliver(sink, body, "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest())
    assert item["signature"] == "invalid" and "no t" in item["signature_error"]


def test_webhook_stale_signature(sink):
    body = b'{"id":"e2"}'
    for t in (int(time.time()) - 600, int(time.time()) + 600):
        _, item = deliver(sink, body, sign(body, t))
        assert item["signature"] == "stale", item
        assert "tolerance of 300 s" in item["signature_error"]


def test_webhook_replayed_delivery(sink):
    body = b'{"id":"e3"}'
    header = sign(body, int(time.time()))
    _, first = deliver(sink, body, header)
    _, again = deliver(sink, body, header)
    assert first["signature"] == "valid"
    assert again["signature"] == "replayed"
    # Spelled differently, it is the same signature.
    _, spaced = deliver(sink, body, " " + header.replace(",", " , ").replace("t=", "t = "))
    assert spaced["signature"] == "replayed"
    # A new timestamp is a new delivery.
    _, other = deliver(sink, body, sign(body, int(time.time()) + 1))
    assert other["signature"] == "valid"


def test_webhook_retry_after_a_failure_is_not_a_replay(sink):
    # Only an accepted (2xx) delivery counts: a retry of a failed one with the same
    # signature (same second, same body) is valid.
    body = b'{"id":"e4"}'
    header = sign(body, int(time.time()))
    call(sink, "POST", "/control/fail", json.dumps({"mode": "500", "count": 1}).encode())
    status, failed = deliver(sink, body, header)
    assert status == 500 and failed["signature"] == "valid"
    status, retried = deliver(sink, body, header)
    assert status == 200 and retried["signature"] == "valid"


def test_webhook_own_secret(sink):
    body = b'{"id":"e5"}'
    header = sign(body, int(time.time()), "demo-secret")
    assert call(sink, "POST", "/control/webhook-secret",
                json.dumps({"name": "demo", "secret": "demo-secret"}).encode())[0] == 200
    try:
        _, item = deliver(sink, body, header, name="demo")
        assert item["signature"] == "valid"
        call(sink, "POST", "/control/reset", b"{}")  # keeps the secret
        _, item = deliver(sink, body, sign(body, int(time.time()) + 1, "demo-secret"), name="demo")
        assert item["signature"] == "valid"
        # Other webhooks keep the default secret.
        _, item = deliver(sink, body, header, name="other")
        assert item["signature"] == "invalid"
    finally:
        call(sink, "POST", "/control/webhook-secret", json.dumps({"name": "demo", "secret": None}).encode())
    _, item = deliver(sink, body, sign(body, int(time.time()) + 2, "demo-secret"), name="demo")
    assert item["signature"] == "invalid"
    assert call(sink, "POST", "/control/webhook-secret", b'{"secret": null}')[0] == 400
    assert call(sink, "POST", "/control/webhook-secret", b'{"name": "x"}')[0] == 400


def test_webhook_missing_signature(sink):
    _, item = deliver(sink, b"{}", None)
    assert item["signature"] == "missing"


# --- Slack's block limits

def section(text):
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def test_blocks_within_limits_are_accepted(sink):
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": "h" * 150}}, section("s" * 3000),
              {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2000}] * 10},
              {"type": "context", "elements": [{"type": "mrkdwn", "text": "c" * 3000}] * 10}]
    blocks += [{"type": "divider"}] * (50 - len(blocks))
    status, _, body = post_message(sink, {"channel": "#a", "text": "t", "blocks": blocks})
    assert status == 200 and body["ok"] is True, body


@pytest.mark.parametrize("blocks,pointer", [
    ([section("s" * 3001)], "/blocks/0/text/text"),
    ([section("ok"), {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}], "/blocks/1/text/text"),
    ([{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}], "/blocks/0/fields"),
    ([{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}], "/blocks/0/fields/0/text"),
    ([{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}], "/blocks/0/elements"),
    ([section("")], "/blocks/0/text/text"),
    ([section("b")] * 51, "/blocks"),
])
def test_blocks_beyond_limits_are_invalid_blocks(sink, blocks, pointer):
    status, _, body = post_message(sink, {"channel": "#a", "text": "t", "blocks": blocks})
    assert status == 200
    assert body["ok"] is False and body["error"] == "invalid_blocks"
    assert any("[json-pointer:%s]" % pointer in e for e in body["errors"]), body["errors"]
    assert received(sink)[-1]["outcome"] == "invalid_blocks"


def test_fail_invalid_blocks_only_hits_messages_with_blocks(sink):
    call(sink, "POST", "/control/fail", json.dumps({"mode": "invalid_blocks", "count": 1}).encode())
    assert post_message(sink, {"channel": "#a", "text": "no blocks"})[2]["ok"] is True
    assert call(sink, "POST", "/webhook/w", b"{}")[0] == 200
    body = post_message(sink, {"channel": "#a", "text": "t", "blocks": [section("b")]})[2]
    assert body == {"ok": False, "error": "invalid_blocks"}
    assert post_message(sink, {"channel": "#a", "text": "t", "blocks": [section("b")]})[2]["ok"] is True
    assert [i["outcome"] for i in received(sink)] == ["ok", "ok", "injected_invalid_blocks", "ok"]


def test_fail_ratelimited_with_a_long_retry_after(sink):
    call(sink, "POST", "/control/fail", json.dumps({"mode": "ratelimited", "count": 1, "retry_after": 86400}).encode())
    assert call(sink, "GET", "/control/fail")[2]["retry_after"] == 86400
    status, headers, _ = call(sink, "POST", "/webhook/w", b"{}")
    assert status == 429 and headers.get("Retry-After") == "86400"


def test_a_webhook_answers_as_told_and_only_that_one(sink):
    body = b'{"policy":"p"}'
    told = lambda spec: call(sink, "POST", "/control/answer", json.dumps(spec).encode())[0]
    assert told({"name": "gate", "status": 409, "body": {"message": "change freeze"}}) == 200
    try:
        status, _, answer = call(sink, "POST", "/webhook/gate", body, {"X-Havoc-Signature": sign(body, int(time.time()), SECRET)})
        assert (status, answer) == (409, {"message": "change freeze"})
        item = received(sink, "?kind=webhook&name=gate")[-1]
        assert item["signature"] == "valid" and item["outcome"] == "answered_409"
        # Another webhook answers as usual.
        assert call(sink, "POST", "/webhook/other", body)[0] == 200
        # A hook that hangs: recorded at once, answered after the delay.
        assert told({"name": "gate", "status": 200, "seconds": 1.5}) == 200
        started = time.time()
        status, _, _ = call(sink, "POST", "/webhook/gate", body)
        assert status == 200 and time.time() - started >= 1.5
        assert received(sink, "?kind=webhook&name=gate")[-1]["delayed_seconds"] == 1.5
    finally:
        assert told({"name": "gate", "status": None}) == 200
    assert call(sink, "POST", "/webhook/gate", body)[0] == 200
    assert told({"name": "gate", "status": 99}) == 400
    assert told({"status": 409}) == 400
