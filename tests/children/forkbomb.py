"""Listens on PORT, then forks children that wait, until fork fails or BOMB_CAP (default 100)
processes exist: a fork bomb with a safety cap of its own. Says how many it made and why it
stopped, and writes the count to $DATA_DIR/forks."""

import os
import socket
import time
from pathlib import Path

listener = socket.create_server(("127.0.0.1", int(os.environ["PORT"])), backlog=128)
made, why = 0, "reached BOMB_CAP"
for _ in range(int(os.environ.get("BOMB_CAP", "100"))):
    try:
        pid = os.fork()
    except OSError as e:
        why = f"fork failed: {e}"
        break
    if pid == 0:
        time.sleep(3600)
        os._exit(0)
    made += 1
print(f"forked {made} children, then {why}", flush=True)
Path(os.environ["SLUM_DATA_DIR"], "forks").write_text(str(made))
time.sleep(3600)
