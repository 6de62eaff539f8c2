"""A child that talks: it listens on $PORT (so it counts as ready) and writes per $MODE:
burst  200 lines of 5,000 characters at once, numbered, then idles
flood  $FLOOD_MB MiB of numbered lines as fast as it can, then "flood done", then idles
weird  invalid UTF-8, a 1 MiB line, a line written in three pieces, stderr lines, then idles
tick   "tick N" every 50 ms, forever
"""

import os
import socket
import sys
import threading
import time


def listen() -> None:
    server = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
    while True:
        conn, _ = server.accept()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        conn.close()


threading.Thread(target=listen, daemon=True).start()
out = sys.stdout.buffer
mode = os.environ.get("MODE", "tick")
if mode == "burst":
    for i in range(200):
        out.write(f"burst {i:03d} ".encode() + b"b" * 4990 + b"\n")
    out.flush()
elif mode == "flood":
    target = int(float(os.environ.get("FLOOD_MB", "50")) * 1024 * 1024)
    written = 0
    i = 0
    while written < target:
        chunk = b"".join(b"flood line %08d %s\n" % (i + j, b"f" * 80) for j in range(1000))
        out.write(chunk)
        written += len(chunk)
        i += 1000
    out.write(b"flood done %d\n" % i)
    out.flush()
elif mode == "weird":
    out.write(b"bad utf8 \xff\xfe here\n")
    out.write(b"huge " + b"h" * (1024 * 1024) + b" end\n")
    out.write(b"after the huge line\n")
    out.flush()
    for piece in (b"split ", b"across ", b"writes\n"):
        out.write(piece)
        out.flush()
        time.sleep(0.05)
    sys.stderr.write("ERROR something broke\n")
    sys.stderr.flush()
    out.write(b'{"level": "debug", "msg": "structured"}\n')
    out.flush()
else:
    i = 0
    while True:
        out.write(b"tick %d\n" % i)
        out.flush()
        i += 1
        time.sleep(0.05)
while True:
    time.sleep(3600)
