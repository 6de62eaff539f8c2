"""`slum registry-migrate` (the real CLI) from a SQLite registry into a real etcd cluster."""

from __future__ import annotations

import subprocess
from pathlib import Path

from slum.fleet import placement
from slum.fleet.etcd import Etcd
from slum.fleet.etcd_registry import EtcdRegistry
from slum.store.db import Store
from slum.store.registry import SqliteRegistry
from tests.conftest import PYTHON, free_port
from tests.fleet.etcd_cluster import EtcdCluster, etcd_cluster_fixture, needs_etcd  # noqa: F401

pytestmark = needs_etcd


def slum(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "slum", *args], capture_output=True, text=True, timeout=60)


async def test_registry_migrate(tmp_path: Path, etcd_cluster: EtcdCluster) -> None:
    db = tmp_path / "slum.db"
    store = Store(db)
    old = SqliteRegistry(store)
    await old.ensure_local()
    n1 = await old.add_server("n1", "http://127.0.0.1:9001", "slum_tok1", 10)
    await old.add_server("n2", "http://127.0.0.1:9002")
    await old.add_tenant("alice", placement.named("n1"), "web", "conf")
    await old.add_tenant("bob", placement.named("n2"))
    await old.add_tenant("carol", placement.named("local"))
    await old.add_alias("shop.example.com", "alice")
    await old.set_server_status(n1.id, "offline")
    store.close()
    url = etcd_cluster.registry_url

    # the router's own tenant has nowhere to go: refused, saying what to do
    r = slum("registry-migrate", "--from", str(db), "--to", url)
    assert r.returncode == 2 and "--local-address" in r.stderr and "carol" in r.stderr
    assert "Traceback" not in r.stderr

    args = [
        "registry-migrate",
        "--from",
        str(db),
        "--to",
        url,
        "--local-address",
        "127.0.0.1:9000",
        "--local-token",
        "slum_tok0",
    ]
    r = slum(*args)
    assert r.returncode == 0, r.stderr
    assert "copied 3 servers, 3 tenants and 1 aliases" in r.stdout
    assert "1 tenants of this router now live on node origin" in r.stdout

    new = EtcdRegistry(Etcd(etcd_cluster.urls))
    try:
        servers = {s.name: s for s in await new.servers()}
        assert set(servers) == {"origin", "n1", "n2"}  # each router creates its own local
        assert servers["n1"].id == n1.id and servers["n1"].token == "slum_tok1"
        assert servers["n1"].capacity == 10 and servers["n1"].status == "offline"
        assert servers["origin"].address == "http://127.0.0.1:9000"
        assert servers["origin"].token == "slum_tok0"
        tenants = {t.id: t for t in await new.tenants()}
        assert {t: x.server for t, x in tenants.items()} == {"alice": "n1", "bob": "n2", "carol": "origin"}
        assert tenants["alice"].aliases == ("shop.example.com",)
        assert (tenants["alice"].service, tenants["alice"].config) == ("web", "conf")
        # the migrated registry works as any other: a router adds to it
        await new.ensure_local(0, set_capacity=True)
        assert (await new.add_tenant("dave", placement.least_loaded)).server in ("n2", "origin")
    finally:
        await new.aclose()

    # again: nothing is overwritten, everything is found in place
    r = slum(*args, "--json")
    assert r.returncode == 0 and '"skipped": 10' in r.stdout, r.stdout

    # into a registry in use with other values: refused before writing
    other = tmp_path / "other.db"
    store = Store(other)
    reg = SqliteRegistry(store)
    await reg.ensure_local()
    await reg.add_server("n1", "http://10.0.0.1:9001")
    store.close()
    r = slum("registry-migrate", "--from", str(other), "--to", url)
    assert r.returncode == 1 and "another value" in r.stderr and "Traceback" not in r.stderr


def test_registry_migrate_bad_input(tmp_path: Path) -> None:
    r = slum("registry-migrate", "--from", str(tmp_path / "none.db"), "--to", "etcd://h:1")
    assert r.returncode == 2 and "no database" in r.stderr
    db = tmp_path / "slum.db"
    Store(db).close()
    for to in ("ftp://h:1", "etcd://h", "etcd://"):
        r = slum("registry-migrate", "--from", str(db), "--to", to)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (to, r.stderr)
    r = slum("registry-migrate", "--from", str(db), "--to", f"etcd://127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "etcd unavailable" in r.stderr and "Traceback" not in r.stderr
