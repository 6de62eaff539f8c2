"""What the CLI prints and which database it opens: a child's output cannot drive the
operator's terminal, and SLUM_DATABASE is the default database."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

from tests.conftest import PYTHON
from tests.e2e.conftest import Slum, slum_argv

EVIL = r"""
import os, socket, sys, time
sys.stdout.write("\x1b]0;pwned\x07\x1b[2Jcleared\rover\tend\x9b31m\n")
sys.stdout.flush()
server = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
time.sleep(3600)
"""

CONFIG = """
[settings]
data_dir = "./data"

[service.evil]
command = ["{python}", "evil.py"]
startup_timeout = 10

[instances]
evil = ["one"]
"""


def test_logs_escape_control_characters_on_a_terminal(slum: Slum) -> None:
    (slum.dir / "evil.py").write_text(EVIL)
    (slum.dir / "tenement.toml").write_text(CONFIG.format(python=PYTHON))
    slum.start()
    deadline = time.monotonic() + 15
    while "cleared" not in slum.cli("logs", "evil:one").stdout:
        assert time.monotonic() < deadline, slum.log.read_text()
        time.sleep(0.2)
    # To a pipe (scripts): the line as the child wrote it.
    assert "\x1b]0;pwned\x07" in slum.cli("logs", "evil:one").stdout
    # To a terminal: every control character but tab made visible.
    main, tty = pty.openpty()
    try:
        proc = subprocess.Popen(
            [*slum_argv(), "logs", "evil:one"],
            cwd=slum.dir,
            stdout=tty,
            stderr=subprocess.DEVNULL,
            env=slum.env(),
        )
        os.close(tty)
        out = b""
        while True:
            ready, _, _ = select.select([main], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break  # the child closed the terminal
            if not chunk:
                break
            out += chunk
        proc.wait(30)
    finally:
        os.close(main)
    text = out.decode("utf-8", "replace")
    assert "cleared" in text, text
    for raw in ("\x1b", "\x07", "\x9b"):
        assert raw not in text, repr(text)
    assert "\\x1b]0;pwned\\x07\\x1b[2Jcleared\\x0dover\tend\\x9b31m" in text, repr(text)


def test_registry_commands_honour_slum_database(slum: Slum) -> None:
    env = {**slum.env(), "SLUM_DATABASE": str(slum.dir / "fleet.db")}
    result = slum.cli("server-add", "http://10.1.2.3:8080", "-n", "far", env=env, check=True)
    assert "far" in result.stdout
    assert "far" in slum.cli("server-list", env=env, check=True).stdout
    assert not (slum.dir / "slum.db").exists()
    assert (slum.dir / "fleet.db").exists()
    token = slum.cli("token-gen", env=env, check=True).stdout.strip()
    assert token.startswith("slum_")
    assert len(slum.cli("token-list", "--json", env=env, check=True).stdout) > 2
    assert not (slum.dir / "slum.db").exists()
