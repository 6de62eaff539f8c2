"""Prints a stack trace on stderr the way each runtime does (one write per line), between a line
before and a line after it, then idles. $TRACE: python (a real exception, printed by the
traceback module), logging (logging.exception: a message line, then the trace), java, go (the
texts the JVM and the Go runtime write). Listens on $PORT, so it counts as ready."""

import logging
import os
import socket
import sys
import time

JAVA = """\
Exception in thread "main" java.lang.IllegalStateException: boom
\tat com.example.Orders.place(Orders.java:42)
\tat com.example.Main.main(Main.java:7)
Caused by: java.io.IOException: disk says no
\tat com.example.Store.save(Store.java:13)
\t... 2 more
"""

GO = """\
panic: runtime error: index out of range [3] with length 3

goroutine 1 [running]:
main.lookup(...)
\t/app/main.go:12
main.main()
\t/app/main.go:8 +0x1d
exit status 2
"""


def place_order(items: list[int]) -> int:
    return items[3]


server = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
err = sys.stderr
err.write("before the trace\n")
err.flush()
time.sleep(0.3)
mode = os.environ.get("TRACE", "python")
if mode in ("python", "logging"):
    logging.basicConfig(stream=err)
    try:
        place_order([1, 2, 3])
    except IndexError:
        if mode == "logging":
            logging.exception("order failed")
        else:
            import traceback

            traceback.print_exc()
else:
    for line in (JAVA if mode == "java" else GO).splitlines(keepends=True):
        err.write(line)
        err.flush()
err.flush()
time.sleep(0.3)
err.write("after the trace\n")
err.flush()
while True:
    time.sleep(3600)
