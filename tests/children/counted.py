"""Listens on $PORT, then writes numbered 100-byte lines to stdout as fast as it can, one write of
$BLOCK lines at a time, and after each write records in $COUNT_FILE how many lines the pipe has
taken: what was written, to compare with what slum stored."""

import os
import socket

server = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
block = int(os.environ.get("BLOCK", "16"))
count = os.open(os.environ["COUNT_FILE"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
written = 0
while True:
    data = b"".join(b"counted %010d %s\n" % (written + i, b"c" * 80) for i in range(block))
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]
    written += block
    os.pwrite(count, b"%12d" % written, 0)
