"""Listens on PORT and writes to $SLUM_DATA_DIR/view.json what it can see: its pid and parent's,
the pids in /proc, and whether a file it writes to /tmp is there (its path goes in the report)."""

import json
import os
import socket
import time
from pathlib import Path

listener = socket.create_server(("127.0.0.1", int(os.environ["PORT"])), backlog=128)
marker = Path("/tmp") / f"slum-nsview-{os.environ['SLUM_INSTANCE'].replace(':', '-')}"
marker.write_text("private?")
view = {
    "pid": os.getpid(),
    "ppid": os.getppid(),
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "tmp_marker": str(marker),
    "tmp_entries": sorted(os.listdir("/tmp")),
}
out = Path(os.environ["SLUM_DATA_DIR"], "view.json")
out.with_suffix(".tmp").write_text(json.dumps(view))
out.with_suffix(".tmp").rename(out)
time.sleep(3600)
