"""`slum caddy` with the real Caddy (Debian's package): the generated Caddyfile, moved to loopback
ports and Caddy's local CA, serves a tenant over HTTPS, and Caddy's on-demand TLS asks slum first,
so a name slum does not route gets no certificate."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import Slum
from tests.e2e.test_spine import wait_for

CADDY = shutil.which("caddy")


def ask(slum: Slum, name: str) -> int:
    return slum.http("GET", f"/api/tls/ask?domain={name}")[0]


def test_ask_answers_only_for_routed_names(slum: Slum) -> None:
    slum.start("tenement.toml", "--domain", "slum.test")
    assert ask(slum, "slum.test") == 200
    assert ask(slum, "alice.slum.test") == 404
    slum.cli("tenant-add", "alice", "-s", "local", "--database", str(slum.database), check=True)
    slum.cli("alias-add", "shop.example.org", "alice", "--database", str(slum.database), check=True)
    wait_for(lambda: ask(slum, "alice.slum.test") == 200, timeout=10)
    assert ask(slum, "ALICE.slum.test.") == 200
    assert ask(slum, "shop.example.org") == 200
    assert ask(slum, "bob.slum.test") == 404
    assert ask(slum, "one.web.slum.test") == 200  # an instance of the config
    assert ask(slum, "zz.web.slum.test") == 404 and ask(slum, "one.nope.slum.test") == 404
    assert ask(slum, "example.org") == 404
    assert ask(slum, "slum.test.evil.com") == 404
    status, _, body = slum.http("GET", "/api/tls/ask?domain=a%20b")
    assert status == 400 and b"host name" in body
    assert slum.http("GET", "/api/tls/ask")[0] == 400
    # Through a proxy from somewhere else (Caddy forwarding a client, or a client faking a hop):
    # the answer would tell who the tenants are.
    for hops in ("203.0.113.9", "127.0.0.1, 203.0.113.9"):
        status, _, body = slum.http("GET", "/api/tls/ask?domain=slum.test", headers={"X-Forwarded-For": hops})
        assert status == 403 and b"loopback" in body
    # On a tenant's host the path is the tenant's, not slum's.
    assert slum.http("GET", "/api/tls/ask?domain=slum.test", host="alice.slum.test")[0] != 200


@pytest.mark.slow
@pytest.mark.skipif(CADDY is None, reason="caddy is not installed (apt-get install caddy)")
def test_caddy_serves_a_tenant_over_https_and_refuses_unknown_names(slum: Slum, tmp_path: Path) -> None:
    assert CADDY is not None
    slum.start("tenement.toml", "--domain", "slum.test")
    wait_for(lambda: slum.cli_json("ps")[0]["status"] == "healthy", timeout=20)
    slum.cli(
        "tenant-add", "alice", "-s", "local", "--service", "web", "--database", str(slum.database), check=True
    )
    wait_for(lambda: ask(slum, "alice.slum.test") == 200, timeout=10)
    assert ask(slum, "one.web.slum.test") == 200 and ask(slum, "zz.web.slum.test") == 404

    caddyfile = tmp_path / "Caddyfile"
    result = slum.cli(
        "caddy", "--domain", "slum.test", "--upstream", f"127.0.0.1:{slum.port}", "--output", str(caddyfile)
    )
    assert result.returncode == 0, result.stderr
    text = caddyfile.read_text()
    assert "slum.test, *.slum.test, *.*.slum.test {" in text
    assert f"ask http://127.0.0.1:{slum.port}/api/tls/ask" in text
    assert "trusted_proxies" in text
    # The test's changes: loopback ports, a private storage, and Caddy's local CA for the ACME one.
    https, http_port, admin = free_port(), free_port(), free_port()
    storage = tmp_path / "caddy"
    caddyfile.write_text(
        text.replace(
            "{\n",
            f"{{\n\thttp_port {http_port}\n\thttps_port {https}\n"
            f"\tadmin 127.0.0.1:{admin}\n\tstorage file_system {storage}\n"
            "\tskip_install_trust\n\tlocal_certs\n",
            1,
        )
    )
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
    }
    log = (tmp_path / "caddy.log").open("wb")
    caddy = subprocess.Popen(
        [CADDY, "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:

        def listening() -> bool:
            assert caddy.poll() is None, (tmp_path / "caddy.log").read_text()
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", https)) == 0

        wait_for(listening, timeout=30)

        def curl(name: str, path: str = "/") -> subprocess.CompletedProcess[str]:
            args = ["curl", "-sS", "--max-time", "20", "--resolve", f"{name}:{https}:127.0.0.1"]
            root = storage / "pki" / "authorities" / "local" / "root.crt"
            # The local CA is made with the first certificate: until then, no check is possible.
            args += ["--cacert", str(root)] if root.exists() else ["-k"]
            return subprocess.run(
                [*args, f"https://{name}:{https}{path}"], capture_output=True, text=True, timeout=60
            )

        # The tenant added on --database reaches the edge's route table within a second (the
        # registry is polled) and Caddy's first request also waits on a certificate: a few tries,
        # each said in the failure if none gets alice's answer.
        tries = []
        for _ in range(5):
            first = curl("alice.slum.test", "/echo")
            tries.append((first.returncode, first.stdout[:200], first.stderr[-300:]))
            if first.returncode == 0 and first.stdout.startswith("{"):
                break
            time.sleep(1)
        assert first.returncode == 0 and first.stdout.startswith("{"), (
            f"{tries}\n" + (tmp_path / "caddy.log").read_text()[-2000:]
        )
        echo = json.loads(first.stdout)
        assert echo["x-tenant-id"] == "alice" and echo["x-forwarded-host"].startswith("alice.")
        verified = curl("alice.slum.test", "/hello")  # now against Caddy's local root
        assert verified.returncode == 0 and verified.stdout == "web:alice /hello", verified.stderr
        assert curl("one.web.slum.test").stdout == "web:one /"

        refused = curl("nobody.slum.test")
        assert refused.returncode != 0 and refused.stdout == ""
        assert not list(storage.glob("certificates/*/nobody.slum.test"))
        assert list(storage.glob("certificates/*/alice.slum.test"))
    finally:
        caddy.terminate()
        try:
            caddy.wait(15)
        except subprocess.TimeoutExpired:
            caddy.kill()
            caddy.wait()
        log.close()
