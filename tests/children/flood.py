"""Writes LINES numbered lines ("line 0", "line 1", ...) to stdout as fast as it can, then exits 0:
output a supervisor must read to the end, in order, even after the process is gone."""

import os
import sys

out = sys.stdout.buffer
for i in range(int(os.environ.get("LINES", "50000"))):
    out.write(b"line %d\n" % i)
out.flush()
