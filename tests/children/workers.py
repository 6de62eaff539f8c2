"""Like a pre-forking server: listens on $PORT and forks $WORKERS workers that each hold
$WORKER_MB MiB of memory; the leader holds little. Measures must count the whole group."""

import os
import socket
import time

server = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
workers = int(os.environ.get("WORKERS", "2"))
for _ in range(workers):
    if os.fork() == 0:
        ballast = bytearray(int(os.environ.get("WORKER_MB", "40")) * 1024 * 1024)
        for i in range(0, len(ballast), 4096):
            ballast[i] = 1  # touch every page so it is resident
        while True:
            conn, _ = server.accept()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nworker")
            conn.close()
while True:
    time.sleep(3600)
