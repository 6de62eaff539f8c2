"""Streaming upstream for proxy tests (stdlib): PORT required.
GET /sse?n=N&gap=S   N server-sent events, S seconds apart (unbuffered)
GET /big?mb=M        M MiB of bytes with Content-Length, written in 64 KiB pieces
GET /chunked         a chunked response in three pieces
GET /close           a body delimited by closing the connection (no length, no chunking)
GET /die             half a promised body, then the process exits
POST /upload         reads the body (Content-Length or chunked), answers its size and sha256
GET /slowhead?s=S    waits S seconds before answering at all
GET /health          ok
"""

import hashlib
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        args = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/health":
            self._plain(b"ok")
        elif url.path == "/slowhead":
            time.sleep(float(args.get("s", 3)))
            self._plain(b"late")
        elif url.path == "/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(args.get("n", 3))):
                self._chunk(f"data: {i} {time.time()}\n\n".encode())
                time.sleep(float(args.get("gap", 0.2)))
            self._chunk(b"")
        elif url.path == "/big":
            size = int(float(args.get("mb", 1)) * 1024 * 1024)
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            piece = b"x" * 65536
            left = size
            while left:
                n = min(left, len(piece))
                self.wfile.write(piece[:n])
                left -= n
        elif url.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"one,", b"two,", b"three"):
                self._chunk(part)
            self._chunk(b"")
        elif url.path == "/close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until close")
            self.close_connection = True
        elif url.path == "/die":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"y" * 500)
            self.wfile.flush()
            os._exit(1)
        else:
            self._plain(url.path.encode())

    def do_POST(self) -> None:
        digest = hashlib.sha256()
        size = 0
        if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            while True:
                n = int(self.rfile.readline().strip(), 16)
                if n == 0:
                    self.rfile.readline()
                    break
                data = self.rfile.read(n)
                self.rfile.readline()
                digest.update(data)
                size += len(data)
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                data = self.rfile.read(min(left, 1 << 20))
                digest.update(data)
                size += len(data)
                left -= len(data)
        self._plain(f"{size} {digest.hexdigest()}".encode())

    def _plain(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
