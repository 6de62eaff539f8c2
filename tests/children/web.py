"""A small real HTTP app for tests, configured by environment variables:
PORT (required), START_DELAY (seconds before listening), IGNORE_TERM=1 (ignore SIGTERM),
GRANDCHILD=1 (fork a `sleep` that outlives this process unless its group is killed; its pid goes
to $DATA_DIR/grandchild.pid), HEALTH_FAIL_FILE (while this file exists /health returns 500).
EXIT_AFTER (seconds after listening, then exit with EXIT_CODE, default 0).
GET /health -> ok; GET /echo -> the request headers as JSON; GET /pid -> pid; other paths -> path.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

if os.environ.get("IGNORE_TERM") == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.environ.get("GRANDCHILD") == "1":
    child = subprocess.Popen(["sleep", "1000"])
    Path(os.environ.get("DATA_DIR", "."), "grandchild.pid").write_text(str(child.pid))
time.sleep(float(os.environ.get("START_DELAY", "0")))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body go out in separate writes: without TCP_NODELAY, Nagle holds the body
    # until the peer's delayed ACK, 40 ms a request, and the app, not slum, sets every pace.
    disable_nagle_algorithm = True

    def send(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/health":
            fail = os.environ.get("HEALTH_FAIL_FILE")
            if fail and Path(fail).exists():
                return self.send(500, b"failing")
            return self.send(200, b"ok")
        if self.path == "/echo":
            return self.send(
                200, json.dumps({k.lower(): v for k, v in self.headers.items()}).encode(), "application/json"
            )
        if self.path == "/pid":
            return self.send(200, str(os.getpid()).encode())
        self.send(200, f"{os.environ.get('SLUM_INSTANCE', '?')} {self.path}".encode())

    do_HEAD = do_GET

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length)
        self.send(200, f"got {len(data)} bytes".encode())

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.command} {self.path}", flush=True)


ThreadingHTTPServer.request_queue_size = 256  # bursts of connections in the tests
server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
if os.environ.get("EXIT_AFTER"):
    threading.Timer(
        float(os.environ["EXIT_AFTER"]), os._exit, [int(os.environ.get("EXIT_CODE", "0"))]
    ).start()
print(f"listening on {server.server_port}", flush=True)
print("a warning on stderr", file=sys.stderr, flush=True)
server.serve_forever()
