"""Answers HTTP on $PORT until GET /unlisten, then closes its listening socket and keeps running:
an upstream that is alive as a process but refuses connections."""

import os
import socket
import time

server = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
while True:
    conn, _ = server.accept()
    with conn:
        request = conn.recv(65536)
        body = b"bye" if request.startswith(b"GET /unlisten") else b"ok"
        if body == b"bye":
            # Closed before the answer: a connection made after "bye" arrives is refused, never
            # caught in the backlog and reset when the listener closes.
            server.close()
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(body), body)
        )
    if body == b"bye":
        while True:
            time.sleep(60)
