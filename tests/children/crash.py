"""Exits at once with code 3, after saying so on stderr: a crash on start."""

import sys

print("crashing on purpose", file=sys.stderr, flush=True)
sys.exit(3)
