"""Listens on $PORT; on SIGTERM writes $GOODBYE_LINES numbered "goodbye N" lines to stdout (more
than a pipe holds, so slum must keep reading while it stops), then exits 0."""

import os
import signal
import socket
import sys
import time


def goodbye(signum: int, frame: object) -> None:
    out = sys.stdout.buffer
    for i in range(int(os.environ.get("GOODBYE_LINES", "5000"))):
        out.write(b"goodbye %d\n" % i)
    out.write(b"goodbye done\n")
    out.flush()
    sys.exit(0)


signal.signal(signal.SIGTERM, goodbye)
server = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
print("ready", flush=True)
while True:
    time.sleep(3600)
