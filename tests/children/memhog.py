"""Listens on PORT, then allocates memory in 8 MB chunks (each written, so the kernel charges
it) up to HOG_MB (default 300), saying how far it got, then waits. Under a memory limit below
HOG_MB the kernel's OOM killer stops it."""

import os
import socket
import time

MB = 1024 * 1024
listener = socket.create_server(("127.0.0.1", int(os.environ["PORT"])), backlog=128)
time.sleep(float(os.environ.get("HOG_AFTER", "0.5")))
chunks = []
for i in range(int(os.environ.get("HOG_MB", "300")) // 8):
    chunks.append(b"x" * (8 * MB))
    print(f"holding {8 * (i + 1)} MB", flush=True)
print("allocated everything", flush=True)
time.sleep(3600)
