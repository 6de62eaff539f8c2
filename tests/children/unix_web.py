"""An HTTP app that listens on its unix socket (SOCKET_PATH) and not on PORT, as tenement's apps
may. GET /health -> ok; GET /slow -> answers after SLOW_S seconds (default 5); other paths ->
"SLUM_INSTANCE PATH via unix"; POST /fill?bytes=N writes N bytes into $DATA_DIR/fill."""

import os
import socketserver
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/health":
            return self.send(200, b"ok")
        if self.path == "/slow":
            time.sleep(float(os.environ.get("SLOW_S", "5")))
            return self.send(200, b"slow")
        self.send(200, f"{os.environ.get('SLUM_INSTANCE', '?')} {self.path} via unix".encode())

    def do_POST(self) -> None:
        size = int(self.path.partition("bytes=")[2] or 0)
        Path(os.environ["DATA_DIR"], "fill").write_bytes(b"x" * size)
        self.send(200, b"filled")

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.command} {self.path}", flush=True)


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


path = os.environ["SOCKET_PATH"]
server = Server(path, Handler)
print(f"listening on {path}", flush=True)
server.serve_forever()
