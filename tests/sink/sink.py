#!/usr/bin/env python3
"""Notification sink for havoc's end-to-end tests (Python 3 standard library only).

Pretends to be the Slack Web API and any number of webhook receivers, records everything it
receives, and can be told to fail on purpose.

  POST /api/chat.postMessage   Slack-like: needs `Authorization: Bearer <token>`; JSON or form
                               body. Answers {"ok":true,"channel":"C…","ts":"…","message":{…}};
                               a bad or missing token answers HTTP 200 {"ok":false,"error":"invalid_auth"}.
  POST /api/auth.test          Slack-like token check.
  POST /api/<other>            {"ok":false,"error":"unknown_method"}
  POST|PUT /webhook/<name>     records the request, answers 200 {"ok":true}
  POST /control/fail           {"mode":"500"|"ratelimited"|"delay","count":N[,"seconds":S]}:
                               the next N Slack/webhook requests answer HTTP 500, or HTTP 429 with
                               `Retry-After: 1` and {"ok":false,"error":"ratelimited"}, or are
                               answered normally after S seconds (default 5). count 0 clears it.
  GET  /control/fail           the failure injection still pending
  POST /control/reset          clears records and pending failures
  GET  /received[?kind=slack|webhook][&name=<webhook name>]
                               everything received, in arrival order, failed attempts included
                               (`response` says what was answered)
  DELETE /received             clears the records
  GET  /health                 {"ok":true}

Usage: sink.py [--host 127.0.0.1] [--port 18090]   (port 0 picks a free port)
The first line on stdout is `listening on http://HOST:PORT`.
Token: env HAVOC_SINK_SLACK_TOKEN (default havoc-local-slack-token).
"""

import argparse
import hashlib
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_TOKEN = "havoc-local-slack-token"
BOT_USER = "U0HAVOCBOT"
BOT_ID = "B0HAVOCBOT"
TEAM = "T0HAVOC"


class State:
    def __init__(self, token):
        self.token = token
        self.lock = threading.Lock()
        self.records = []
        self.seq = 0
        self.fail_mode = None
        self.fail_count = 0
        self.fail_seconds = 5.0
        self.last_ts = 0.0

    def next_ts(self):
        """Slack-style message timestamp, unique and increasing."""
        with self.lock:
            ts = max(time.time(), self.last_ts + 0.000001)
            self.last_ts = ts
            return "%.6f" % ts

    def take_failure(self):
        with self.lock:
            if self.fail_mode and self.fail_count > 0:
                self.fail_count -= 1
                mode = self.fail_mode
                if self.fail_count == 0:
                    self.fail_mode = None
                return mode, self.fail_seconds
            return None, 0.0

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
                           "seconds": self.state.fail_seconds}
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
        if path == "/control/reset":
            self.read_body()
            with self.state.lock:
                self.state.records.clear()
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
        except (ValueError, TypeError, AttributeError):
            return self.send_json(400, {"ok": False, "error": "bad_request"})
        if mode not in ("500", "ratelimited", "delay"):
            return self.send_json(400, {"ok": False, "error": "bad_mode",
                                        "detail": "mode must be 500, ratelimited or delay"})
        with self.state.lock:
            self.state.fail_mode = mode if count > 0 else None
            self.state.fail_count = max(count, 0)
            self.state.fail_seconds = seconds
        return self.send_json(200, {"ok": True, "mode": mode, "count": max(count, 0)})

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
        if kind == "webhook":
            entry["name"] = path[len("/webhook/"):]
        else:
            entry["method_name"] = path[len("/api/"):]

        mode, seconds = self.state.take_failure()
        headers = {}
        if mode == "500":
            entry["outcome"], status, body = "injected_500", 500, {"ok": False, "error": "internal_error"}
        elif mode == "ratelimited":
            entry["outcome"], status, body = "injected_ratelimited", 429, {"ok": False, "error": "ratelimited"}
            headers = {"Retry-After": "1"}
        else:
            if mode == "delay":
                entry["delayed_seconds"] = seconds
                time.sleep(seconds)
            if kind == "webhook":
                entry["outcome"], status, body = "ok", 200, {"ok": True}
            else:
                entry["outcome"], status, body = self.slack_answer(entry["method_name"], parsed_json, form)
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
    server.state = State(os.environ.get("HAVOC_SINK_SLACK_TOKEN") or DEFAULT_TOKEN)
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
