#!/usr/bin/env python3
"""Notification sink for havoc's end-to-end tests (Python 3 standard library only).

Pretends to be the Slack Web API and any number of webhook receivers, records everything it
receives, and can be told to fail on purpose.

  POST /api/chat.postMessage   Slack-like: needs `Authorization: Bearer <token>`; JSON or form
                               body. Answers {"ok":true,"channel":"C…","ts":"…","message":{…}};
                               a bad or missing token answers HTTP 200 {"ok":false,"error":"invalid_auth"};
                               blocks beyond Slack's limits (more than 50 blocks, a header over 150
                               characters, a section text over 3,000, more than 10 fields or one over
                               2,000, more than 10 context elements, a text object over 3,000 or
                               empty) answer {"ok":false,"error":"invalid_blocks","errors":[…]}.
  POST /api/auth.test          Slack-like token check.
  POST /api/<other>            {"ok":false,"error":"unknown_method"}
  POST|PUT /webhook/<name>     records the request, answers 200 {"ok":true}. Checks havoc's signature
                               (X-Havoc-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>)
                               and records `signature`: valid | invalid (malformed or not matching) |
                               stale (matching, but t is more than the tolerance from now) |
                               replayed (a valid signature already accepted) | missing, with
                               `signature_error` saying why when it is not valid. A signature counts
                               as accepted only when the delivery was answered 2xx.
  POST /control/fail           {"mode":"500"|"ratelimited"|"delay"|"invalid_blocks","count":N
                               [,"seconds":S][,"retry_after":R]}: the next N Slack/webhook requests
                               answer HTTP 500, or HTTP 429 with `Retry-After: R` (default 1) and
                               {"ok":false,"error":"ratelimited"}, or are answered normally after S
                               seconds (default 5); invalid_blocks: the next N chat.postMessage calls
                               that carry blocks answer {"ok":false,"error":"invalid_blocks"} (others
                               pass and do not count). count 0 clears it.
  GET  /control/fail           the failure injection still pending
  POST /control/webhook-secret {"name":"<webhook name>","secret":"…"}: the signing secret of that
                               webhook (without "name": the default one); "secret": null removes
                               a webhook's own. Kept across /control/reset (it is configuration).
  POST /control/answer         {"name":"<webhook name>","status":S[,"body":{…}][,"seconds":D]}: from
                               now on /webhook/<name> answers HTTP S with that JSON body (default
                               {"ok": S < 300}), after D seconds (default 0: a hook that hangs is
                               one with D beyond its caller's timeout); "status": null answers
                               normally again. One webhook's answer never touches another's (tests
                               running side by side each use their own name), e.g. a preflight hook.
  POST /control/reset          clears records, pending failures and answers
  GET  /received[?kind=slack|webhook][&name=<webhook name>]
                               everything received, in arrival order, failed attempts included
                               (`response` says what was answered)
  DELETE /received             clears the records
  GET  /health                 {"ok":true}

Usage: sink.py [--host 127.0.0.1] [--port 18090]   (port 0 picks a free port)
The first line on stdout is `listening on http://HOST:PORT`.
Token: env HAVOC_SINK_SLACK_TOKEN (default havoc-local-slack-token).
Webhook signing secret: env HAVOC_SINK_WEBHOOK_SECRET (default e2e-webhook-secret, the one the
end-to-end tests configure); tolerance: env HAVOC_SINK_SIGNATURE_TOLERANCE seconds (default 300).
"""

import argparse
import hashlib
import hmac
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_TOKEN = "havoc-local-slack-token"
DEFAULT_WEBHOOK_SECRET = "e2e-webhook-secret"
DEFAULT_TOLERANCE = 300
BOT_USER = "U0HAVOCBOT"
BOT_ID = "B0HAVOCBOT"
TEAM = "T0HAVOC"


# Slack's Block Kit limits (characters), as Slack enforces them with invalid_blocks.
MAX_BLOCKS = 50
MAX_HEADER_TEXT = 150
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_TEXT_OBJECT = 3000


def verify_signature(secret, header, body, now, tolerance):
    """havoc's webhook signature check, the twin of havoc_integrations::webhook::verify.

    Returns None when `header` (X-Havoc-Signature) is a valid signature of `body` (bytes) by
    `secret` within `tolerance` seconds of `now`, else (kind, detail) with kind one of
    missing, malformed, mismatch, stale. The MAC is checked before the timestamp.
    """
    header = (header or "").strip()
    if not header:
        return "missing", "no signature"
    timestamp, candidates = None, []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return "malformed", "expected key=value pairs"
        key, value = key.strip(), value.strip()
        if key == "t":
            if timestamp is not None:
                return "malformed", "more than one t"
            if not value or not all("0" <= c <= "9" for c in value):
                return "malformed", "t is not a number of seconds"
            timestamp = int(value)
            if timestamp >= 2 ** 64:
                return "malformed", "t is out of range"
        elif key == "v1":
            try:
                candidates.append(bytes.fromhex(value))
            except ValueError:
                pass  # cannot match; does not spoil the others
    if timestamp is None:
        return "malformed", "no t"
    if not candidates:
        return "malformed", "no v1"
    expected = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).digest()
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        return "mismatch", "signature does not match"
    age = abs(int(now) - timestamp)
    if age > tolerance:
        return "stale", "signature timestamp %d is %d s from now, beyond the tolerance of %d s" % (
            timestamp, age, tolerance)
    return None


def block_errors(blocks):
    """What Slack would complain about in `blocks` (a list of messages; empty: acceptable)."""
    if not isinstance(blocks, list):
        return ["must be an array [json-pointer:/blocks]"]
    errors = []

    def text_object(obj, pointer, limit):
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            errors.append("must be a text object [json-pointer:%s]" % pointer)
            return
        n = len(obj["text"])
        if n == 0:
            errors.append("must be more than 0 characters [json-pointer:%s/text]" % pointer)
        elif n > limit:
            errors.append("must be less than %d characters [json-pointer:%s/text]" % (limit + 1, pointer))

    def items(block, key, pointer, max_items):
        value = block.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            errors.append("must be an array [json-pointer:%s/%s]" % (pointer, key))
            return []
        if len(value) > max_items:
            errors.append("must be less than %d items [json-pointer:%s/%s]" % (max_items + 1, pointer, key))
        return value

    if len(blocks) > MAX_BLOCKS:
        errors.append("must be less than %d items [json-pointer:/blocks]" % (MAX_BLOCKS + 1))
    for i, block in enumerate(blocks):
        pointer = "/blocks/%d" % i
        if not isinstance(block, dict):
            errors.append("must be an object [json-pointer:%s]" % pointer)
            continue
        kind = block.get("type")
        if kind == "header":
            text_object(block.get("text"), pointer + "/text", MAX_HEADER_TEXT)
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                errors.append("must provide text or fields [json-pointer:%s]" % pointer)
            if "text" in block:
                text_object(block["text"], pointer + "/text", MAX_SECTION_TEXT)
            for j, field in enumerate(items(block, "fields", pointer, MAX_FIELDS)):
                text_object(field, "%s/fields/%d" % (pointer, j), MAX_FIELD_TEXT)
        elif kind == "context":
            for j, element in enumerate(items(block, "elements", pointer, MAX_CONTEXT_ELEMENTS)):
                if isinstance(element, dict) and element.get("type") in ("mrkdwn", "plain_text"):
                    text_object(element, "%s/elements/%d" % (pointer, j), MAX_TEXT_OBJECT)
    return errors


class State:
    def __init__(self, token, webhook_secret=DEFAULT_WEBHOOK_SECRET, tolerance=DEFAULT_TOLERANCE):
        self.token = token
        self.webhook_secret = webhook_secret
        self.tolerance = tolerance
        self.lock = threading.Lock()
        self.records = []
        self.seq = 0
        self.fail_mode = None
        self.fail_count = 0
        self.fail_seconds = 5.0
        self.fail_retry_after = 1
        self.last_ts = 0.0
        self.webhook_secrets = {}  # webhook name -> its own signing secret
        self.answers = {}  # webhook name -> (status, body, seconds) it answers with
        self.accepted = {}  # (t, sha256 of the body) of accepted deliveries -> t, for replays

    def next_ts(self):
        """Slack-style message timestamp, unique and increasing."""
        with self.lock:
            ts = max(time.time(), self.last_ts + 0.000001)
            self.last_ts = ts
            return "%.6f" % ts

    def take_failure(self, carries_blocks):
        """The pending failure for this request, if any, and its parameters. invalid_blocks
        applies only to chat.postMessage calls that carry blocks."""
        with self.lock:
            if self.fail_mode and self.fail_count > 0:
                if self.fail_mode == "invalid_blocks" and not carries_blocks:
                    return None, 0.0, 0
                self.fail_count -= 1
                mode = self.fail_mode
                if self.fail_count == 0:
                    self.fail_mode = None
                return mode, self.fail_seconds, self.fail_retry_after
            return None, 0.0, 0

    def secret_for(self, name):
        with self.lock:
            return self.webhook_secrets.get(name, self.webhook_secret)

    def check_signature(self, name, header, body):
        """`signature`, `signature_error` and the replay key of a webhook delivery.

        A valid signature binds the timestamp to the body, so a second valid delivery of
        the same body with the same timestamp is a replay (havoc signs every attempt anew)."""
        problem = verify_signature(self.secret_for(name), header, body, time.time(), self.tolerance)
        if problem is None:
            t = next(int(v) for k, _, v in (p.partition("=") for p in header.split(",")) if k.strip() == "t")
            key = (t, hashlib.sha256(body).hexdigest())
            with self.lock:
                if key in self.accepted:
                    return "replayed", "a delivery with this signature was already accepted", None
            return "valid", None, key
        kind, detail = problem
        if kind in ("malformed", "mismatch"):
            return "invalid", detail, None
        return kind, detail, None

    def accept(self, key):
        """Remembers an accepted (answered 2xx) delivery; False if it was accepted before (a
        concurrent replay). Forgets those older than twice the tolerance."""
        now = time.time()
        with self.lock:
            for old, stamp in list(self.accepted.items()):
                if stamp < now - 2 * self.tolerance:
                    del self.accepted[old]
            if key in self.accepted:
                return False
            self.accepted[key] = key[0]
            return True

    def record(self, entry):
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.records.append(entry)


def channel_id(name):
    """Slack answers with channel IDs; map names like #alerts to a stable fake ID."""
    name = str(name)
    if name[:1] in ("C", "G", "D") and name[1:].isalnum() and name.upper() == name:
        return name
    return "C" + hashlib.sha1(name.lstrip("#").encode()).hexdigest()[:10].upper()


class Handler(BaseHTTPRequestHandler):
    server_version = "havoc-sink/1"
    protocol_version = "HTTP/1.1"

    @property
    def state(self):
        return self.server.state

    def log_message(self, fmt, *args):  # quiet unless asked
        if os.environ.get("HAVOC_SINK_VERBOSE"):
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    # --- plumbing
    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_json(self, status, obj, extra_headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def split(self):
        parsed = urllib.parse.urlsplit(self.path)
        return parsed.path, urllib.parse.parse_qs(parsed.query)

    def parse_body(self, raw):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        text = raw.decode("utf-8", errors="replace")
        parsed_json, form = None, None
        if ctype == "application/x-www-form-urlencoded":
            form = {k: v[-1] for k, v in urllib.parse.parse_qs(text, keep_blank_values=True).items()}
        else:
            try:
                parsed_json = json.loads(text) if text.strip() else None
            except ValueError:
                parsed_json = None
        return text, parsed_json, form

    # --- dispatch
    def do_GET(self):
        path, query = self.split()
        if path == "/health":
            return self.send_json(200, {"ok": True})
        if path == "/received":
            kind = query.get("kind", [None])[-1]
            name = query.get("name", [None])[-1]
            with self.state.lock:
                items = [r for r in self.state.records
                         if (kind is None or r["kind"] == kind) and (name is None or r.get("name") == name)]
            return self.send_json(200, items)
        if path == "/control/fail":
            with self.state.lock:
                pending = {"mode": self.state.fail_mode, "count": self.state.fail_count,
                           "seconds": self.state.fail_seconds, "retry_after": self.state.fail_retry_after}
            return self.send_json(200, pending)
        return self.send_json(404, {"ok": False, "error": "not_found"})

    def do_DELETE(self):
        path, _ = self.split()
        if path == "/received":
            with self.state.lock:
                self.state.records.clear()
            return self.send_json(200, {"ok": True})
        if path == "/control/fail":
            with self.state.lock:
                self.state.fail_mode, self.state.fail_count = None, 0
            return self.send_json(200, {"ok": True})
        return self.send_json(404, {"ok": False, "error": "not_found"})

    def do_PUT(self):
        path, _ = self.split()
        if path.startswith("/webhook/"):
            return self.handle_capture("webhook")
        return self.send_json(404, {"ok": False, "error": "not_found"})

    def do_POST(self):
        path, _ = self.split()
        if path.startswith("/api/"):
            return self.handle_capture("slack")
        if path.startswith("/webhook/"):
            return self.handle_capture("webhook")
        if path == "/control/fail":
            return self.handle_control_fail()
        if path == "/control/webhook-secret":
            return self.handle_control_secret()
        if path == "/control/answer":
            return self.handle_control_answer()
        if path == "/control/reset":
            self.read_body()
            with self.state.lock:
                self.state.records.clear()
                self.state.accepted.clear()
                self.state.answers.clear()
                self.state.fail_mode, self.state.fail_count = None, 0
            return self.send_json(200, {"ok": True})
        self.read_body()
        return self.send_json(404, {"ok": False, "error": "not_found"})

    def handle_control_fail(self):
        try:
            spec = json.loads(self.read_body() or b"{}")
            mode = str(spec.get("mode", "500"))
            count = int(spec.get("count", 1))
            seconds = float(spec.get("seconds", 5))
            retry_after = int(spec.get("retry_after", 1))
        except (ValueError, TypeError, AttributeError):
            return self.send_json(400, {"ok": False, "error": "bad_request"})
        if mode not in ("500", "ratelimited", "delay", "invalid_blocks"):
            return self.send_json(400, {"ok": False, "error": "bad_mode",
                                        "detail": "mode must be 500, ratelimited, delay or invalid_blocks"})
        with self.state.lock:
            self.state.fail_mode = mode if count > 0 else None
            self.state.fail_count = max(count, 0)
            self.state.fail_seconds = seconds
            self.state.fail_retry_after = retry_after
        return self.send_json(200, {"ok": True, "mode": mode, "count": max(count, 0)})

    def handle_control_answer(self):
        try:
            spec = json.loads(self.read_body() or b"{}")
            name, status = str(spec["name"]), spec["status"]
            if status is not None:
                status = int(status)
                if not 200 <= status <= 599:
                    raise ValueError("status")
            body = spec.get("body", {"ok": status is not None and status < 300})
            seconds = float(spec.get("seconds", 0))
        except (ValueError, TypeError, AttributeError, KeyError):
            return self.send_json(400, {"ok": False, "error": "bad_request",
                                        "detail": 'expected {"name": "...", "status": 200..599 or null}'})
        with self.state.lock:
            if status is None:
                self.state.answers.pop(name, None)
            else:
                self.state.answers[name] = (status, body, seconds)
        return self.send_json(200, {"ok": True})

    def handle_control_secret(self):
        try:
            spec = json.loads(self.read_body() or b"{}")
            name, secret = spec.get("name"), spec["secret"]
            if secret is not None and (not isinstance(secret, str) or not secret):
                raise ValueError("secret")
        except (ValueError, TypeError, AttributeError, KeyError):
            return self.send_json(400, {"ok": False, "error": "bad_request",
                                        "detail": 'expected {"name": "...", "secret": "..."}'})
        with self.state.lock:
            if name is None:
                if secret is None:
                    return self.send_json(400, {"ok": False, "error": "bad_request",
                                                "detail": "the default secret cannot be removed"})
                self.state.webhook_secret = secret
            elif secret is None:
                self.state.webhook_secrets.pop(str(name), None)
            else:
                self.state.webhook_secrets[str(name)] = secret
        return self.send_json(200, {"ok": True})

    # --- Slack + webhooks
    def handle_capture(self, kind):
        path, query = self.split()
        raw = self.read_body()
        text, parsed_json, form = self.parse_body(raw)
        entry = {
            "kind": kind,
            "time": time.time(),
            "method": self.command,
            "path": path,
            "query": {k: v[-1] for k, v in query.items()},
            "headers": {k.lower(): v for k, v in self.headers.items()},  # names lower-cased
            "body": text,
            "json": parsed_json,
            "form": form,
        }
        carries_blocks = False
        replay_key = None
        if kind == "webhook":
            entry["name"] = path[len("/webhook/"):]
            signature = self.headers.get("X-Havoc-Signature") or ""
            entry["signature"], error, replay_key = self.state.check_signature(entry["name"], signature, raw)
            if error:
                entry["signature_error"] = error
        else:
            entry["method_name"] = path[len("/api/"):]
            args = parsed_json if isinstance(parsed_json, dict) else (form or {})
            carries_blocks = entry["method_name"] == "chat.postMessage" and bool(args.get("blocks"))

        mode, seconds, retry_after = self.state.take_failure(carries_blocks)
        headers = {}
        if mode == "500":
            entry["outcome"], status, body = "injected_500", 500, {"ok": False, "error": "internal_error"}
        elif mode == "ratelimited":
            entry["outcome"], status, body = "injected_ratelimited", 429, {"ok": False, "error": "ratelimited"}
            headers = {"Retry-After": str(retry_after)}
        elif mode == "invalid_blocks":
            entry["outcome"], status, body = "injected_invalid_blocks", 200, {"ok": False, "error": "invalid_blocks"}
        else:
            if mode == "delay":
                entry["delayed_seconds"] = seconds
                time.sleep(seconds)
            with self.state.lock:
                answer = self.state.answers.get(entry.get("name")) if kind == "webhook" else None
            if answer is not None:
                status, body, delay = answer
                entry["outcome"] = "answered_%d" % status
                if delay > 0:
                    entry["delayed_seconds"] = delay
                    # Recorded before the wait: the caller that gives up still finds it.
                    entry["response"] = {"status": status, "headers": {}, "body": body}
                    self.state.record(entry)
                    time.sleep(delay)
                    try:
                        return self.send_json(status, body, headers)
                    except (BrokenPipeError, ConnectionResetError):
                        return None
            elif kind == "webhook":
                entry["outcome"], status, body = "ok", 200, {"ok": True}
            else:
                entry["outcome"], status, body = self.slack_answer(entry["method_name"], parsed_json, form)
        if replay_key is not None and 200 <= status < 300 and not self.state.accept(replay_key):
            entry["signature"] = "replayed"
            entry["signature_error"] = "a delivery with this signature was already accepted"
        # Record before answering, so a client that got its answer always finds its request.
        entry["response"] = {"status": status, "headers": headers, "body": body}
        self.state.record(entry)
        self.send_json(status, body, headers)

    def slack_answer(self, method, parsed_json, form):
        auth = self.headers.get("Authorization") or ""
        if auth != "Bearer " + self.state.token:
            return "invalid_auth", 200, {"ok": False, "error": "invalid_auth"}
        if method == "auth.test":
            return "ok", 200, {"ok": True, "url": "http://havoc-local.slack.invalid/", "team": "havoc-local",
                               "user": "havoc", "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID}
        if method != "chat.postMessage":
            return "unknown_method", 200, {"ok": False, "error": "unknown_method"}
        args = parsed_json if isinstance(parsed_json, dict) else (form or {})
        if parsed_json is None and form is None:
            return "invalid_arguments", 200, {"ok": False, "error": "invalid_arguments"}
        channel = args.get("channel")
        if not channel:
            return "channel_not_found", 200, {"ok": False, "error": "channel_not_found"}
        blocks, attachments = args.get("blocks"), args.get("attachments")
        for field in ("blocks", "attachments"):
            val = args.get(field)
            if isinstance(val, str):  # form bodies carry these as JSON strings
                try:
                    val = json.loads(val)
                except ValueError:
                    return "invalid_" + field, 200, {"ok": False, "error": "invalid_" + field}
                if field == "blocks":
                    blocks = val
                else:
                    attachments = val
        text = args.get("text")
        if not text and not blocks and not attachments:
            return "no_text", 200, {"ok": False, "error": "no_text"}
        if blocks:
            errors = block_errors(blocks)
            if errors:
                return "invalid_blocks", 200, {"ok": False, "error": "invalid_blocks", "errors": errors,
                                               "response_metadata": {"messages": ["[ERROR] " + e for e in errors]}}
        ts = self.state.next_ts()
        message = {"type": "message", "subtype": "bot_message", "text": text or "", "user": BOT_USER,
                   "bot_id": BOT_ID, "team": TEAM, "ts": ts}
        if blocks:
            message["blocks"] = blocks
        if attachments:
            message["attachments"] = attachments
        if args.get("thread_ts"):
            message["thread_ts"] = args["thread_ts"]
        return "ok", 200, {"ok": True, "channel": channel_id(channel), "ts": ts, "message": message}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("HAVOC_SINK_PORT", "18090")))
    args = ap.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.state = State(os.environ.get("HAVOC_SINK_SLACK_TOKEN") or DEFAULT_TOKEN,
                         os.environ.get("HAVOC_SINK_WEBHOOK_SECRET") or DEFAULT_WEBHOOK_SECRET,
                         int(os.environ.get("HAVOC_SINK_SIGNATURE_TOLERANCE") or DEFAULT_TOLERANCE))
    host, port = server.server_address[:2]
    print("listening on http://%s:%d" % (host, port), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
