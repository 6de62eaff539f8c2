"""An app that misbehaves on purpose, one way per path (raw sockets, stdlib only; PORT required).
Requests are read properly (Content-Length or chunked bodies) unless the path says otherwise.

/ok                  200 "ok", keep-alive           /health   the same
/echo                200, the request head it received as the body
/cl-abc              Content-Length: abc            /status-2000   a four-digit status
/status-99           a two-digit status             /garbage       bytes that are not HTTP
/204-body /304-body  a 204/304 with Content-Length: 5 and a body
/cl-te               Content-Length and chunked     /two-cl        two different Content-Lengths
/nul                 NUL in a header value          /obs-fold      a folded header line
/bare-lf             a head with bare LF line ends  /huge-head     a 100 KiB response head
/bad-chunk           a good chunk, then (later) a bad chunk size
/head-body           answers HEAD with a body       /after         a second, unsolicited response
/early-hints         103 with a Link header, then 200
/switch              101 Switching Protocols, asked or not
/trailers            chunked, with Host and X-Secret trailers
/te-gzip             Transfer-Encoding: gzip, chunked
/trailer-flood       chunked, then megabytes of trailer lines
/hang-up             closes without answering (every connection)
/early-413           413 at once without reading the body, keep-alive promised
/expect              sends 100 Continue when asked, then reads the body and answers its size
/expect-401          answers 401 at once to a request that expects 100-continue
/slow?s=S            answers after S seconds
/cut                 promises 1000 bytes, sends 10, closes
"""

import os
import socket
import threading
import time
from urllib.parse import parse_qs, urlsplit

PORT = int(os.environ["PORT"])


def read_head(conn: socket.socket, buf: bytes) -> tuple[bytes, bytes] | None:
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def read_body(conn: socket.socket, head: bytes, rest: bytes) -> tuple[bytes, bytes]:
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += conn.recv(65536)
            line, _, rest = rest.partition(b"\r\n")
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while b"\r\n\r\n" not in b"\r\n" + rest:
                    rest += conn.recv(65536)
                _, _, rest = (b"\r\n" + rest).partition(b"\r\n\r\n")
                return body, rest
            while len(rest) < size + 2:
                rest += conn.recv(65536)
            body += rest[:size]
            rest = rest[size + 2 :]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        data = conn.recv(65536)
        if not data:
            break
        rest += data
    return rest[:length], rest[length:]


def plain(body: bytes, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 " + status.encode() + b"\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body


def handle(conn: socket.socket) -> None:
    buf = b""
    with conn:
        while True:
            got = read_head(conn, buf)
            if got is None:
                return
            head, rest = got
            method, target = head.split(b" ", 2)[:2]
            url = urlsplit(target.decode())
            path = url.path
            args = {k: v[0] for k, v in parse_qs(url.query).items()}
            lower = head.lower()
            if path == "/hang-up":
                return
            if path == "/early-413":
                conn.sendall(plain(b"too large", "413 Content Too Large"))
                # The body is never read: a proxy that reuses this connection sends its next
                # request into the middle of it.
                buf = b""
                continue
            if path == "/expect-401":
                conn.sendall(plain(b"who are you", "401 Unauthorized"))
                return
            if path == "/expect" and b"expect: 100-continue" in lower:
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            body, buf = read_body(conn, head, rest)
            if method == b"HEAD" and path == "/head-body":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                continue
            answer = ANSWERS.get(path)
            if path in ("/ok", "/health"):
                conn.sendall(plain(b"ok"))
            elif path == "/echo":
                conn.sendall(plain(head + b"\r\n\r\n" + body))
            elif path == "/expect":
                conn.sendall(plain(str(len(body)).encode()))
            elif path == "/slow":
                time.sleep(float(args.get("s", 2)))
                conn.sendall(plain(b"slow"))
            elif path == "/bad-chunk":
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
                time.sleep(0.3)
                conn.sendall(b"zz\r\nnonsense\r\n")
                time.sleep(0.3)
                return
            elif path == "/cut":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
                return
            elif path == "/trailer-flood":
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n")
                try:
                    for _ in range(200):
                        conn.sendall((b"X-Flood: " + b"f" * 1000 + b"\r\n") * 50)
                except OSError:
                    pass
                return
            elif path == "/huge-head":
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\n"
                    + b"X-Big: "
                    + b"b" * 1000
                    + b"\r\n" * 1
                    + (b"X-More: " + b"m" * 1000 + b"\r\n") * 100
                    + b"Content-Length: 2\r\n\r\nhi"
                )
            elif path == "/switch":
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
                )
                time.sleep(0.5)
                return
            elif answer is not None:
                conn.sendall(answer)
                if path in (
                    "/garbage",
                    "/bare-lf",
                    "/obs-fold",
                    "/nul",
                    "/cl-abc",
                    "/status-2000",
                    "/status-99",
                    "/cl-te",
                    "/two-cl",
                    "/te-gzip",
                ):
                    time.sleep(0.2)
                    return
            else:
                conn.sendall(plain(f"path {path}".encode()))


ANSWERS = {
    "/cl-abc": b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello",
    "/status-2000": b"HTTP/1.1 2000 Odd\r\nContent-Length: 2\r\n\r\nhi",
    "/status-99": b"HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nhi",
    "/garbage": b"\x16\x03\x01\x02\x00 this is not HTTP at all\r\n\r\n",
    "/204-body": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
    "/304-body": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello",
    "/cl-te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    "/two-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "/nul": b"HTTP/1.1 200 OK\r\nX-Bad: a\x00b\r\nContent-Length: 2\r\n\r\nhi",
    "/obs-fold": b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n  b\r\nContent-Length: 2\r\n\r\nhi",
    "/bare-lf": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
    "/head-body": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "/after": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
    b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nunasked!",
    "/early-hints": b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
    "/trailers": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Secret\r\n\r\n"
    b"5\r\nhello\r\n0\r\nHost: evil.example\r\nX-Secret: s3cret\r\n\r\n",
    "/te-gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
}

server = socket.create_server(("127.0.0.1", PORT), backlog=128)
while True:
    c, _ = server.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
