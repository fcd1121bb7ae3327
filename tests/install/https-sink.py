#!/usr/bin/env python3
"""A small HTTPS server that records every request it receives, for tests/install.

    https-sink.py PORT CERT KEY RECORD_FILE

Serves on 127.0.0.1:PORT with CERT/KEY (PEM). Every POST is appended to RECORD_FILE as
one JSON line {"path", "headers", "body"} and answered 200; GET /healthz answers 200.
It proves that a client trusts the CA that signed CERT (the image's CA bundle test).
"""

import http.server
import json
import ssl
import sys


def main() -> None:
    port, cert, key, record = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            line = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
            with open(record, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, fmt: str, *args: object) -> None:
            sys.stderr.write("https-sink: " + (fmt % args) + "\n")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
