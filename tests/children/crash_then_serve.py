"""Crashes on its first CRASHES starts (counted in $DATA_DIR/starts), then serves like web.py:
a crash loop that ends."""

import os
import runpy
import sys
from pathlib import Path

counter = Path(os.environ.get("DATA_DIR", "."), "starts")
starts = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(starts))
if starts <= int(os.environ.get("CRASHES", "3")):
    print(f"start {starts}: crashing on purpose", file=sys.stderr, flush=True)
    sys.exit(3)
runpy.run_path(str(Path(__file__).with_name("web.py")), run_name="__main__")
