"""Answers every request with keep-alive promised, then closes the connection 50 ms later
without a word, as servers with short idle timeouts do: a pooled connection goes stale."""

import os
import socket
import threading
import time

server = socket.create_server(("127.0.0.1", int(os.environ["PORT"])), backlog=64)
count = 0


def handle(conn: socket.socket) -> None:
    global count
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(rest) < length:
            rest += conn.recv(65536)
        count += 1
        body = f"answer {count}".encode()
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
        )
        time.sleep(0.05)


while True:
    c, _ = server.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
