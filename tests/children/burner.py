"""Listens on PORT and burns CPU in a loop forever (pin it with taskset to make two compete).
With NO_LISTEN=1 it only burns: a second burner in the same instance, which cannot bind the port."""

import os
import socket

if os.environ.get("NO_LISTEN") != "1":
    listener = socket.create_server(("127.0.0.1", int(os.environ["PORT"])), backlog=128)
n = 0
while True:
    n += 1
