"""Listens on PORT and burns CPU in a loop forever (pin it with taskset to make two compete)."""

import os
import socket

listener = socket.create_server(("127.0.0.1", int(os.environ["PORT"])), backlog=128)
n = 0
while True:
    n += 1
