"""A tiny notes app, one process per tenant: GET / lists notes, POST / adds one, /health is ok.
Standard library only; listens on $PORT, keeps its notes in $DATA_DIR/notes.txt."""

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DATA = Path(os.environ.get("DATA_DIR", ".")) / "notes.txt"
TENANT = os.environ.get("TENANT", "?")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body are separate writes: without TCP_NODELAY each keep-alive answer waits 40 ms
    # for the client's delayed ACK.
    disable_nagle_algorithm = True

    def _send(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/health":
            return self._send(200, "ok\n")
        notes = DATA.read_text() if DATA.exists() else ""
        self._send(200, f"notes of {TENANT}\n{notes}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        note = self.rfile.read(length).decode("utf-8", "replace").strip()
        DATA.parent.mkdir(parents=True, exist_ok=True)
        with DATA.open("a") as f:
            f.write(note + "\n")
        print(f"note added for {TENANT}: {note[:80]}", flush=True)
        self._send(201, "added\n")

    def log_message(self, format: str, *args: object) -> None:
        sys.stdout.write(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    # socketserver's default listen backlog is 5: a burst of requests after a wake would
    # overflow it and wait on TCP retransmits.
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    print(f"notes for {TENANT} listening on port {server.server_port}", flush=True)
    server.serve_forever()
