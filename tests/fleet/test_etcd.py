"""The etcd JSON-gateway client against a real 3-member cluster: reads, writes, transactions,
watches, leases, and what it answers when members die."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import trio

from slum.errors import BadRequest, Unavailable
from slum.fleet.etcd import (
    Compacted,
    Compare,
    Delete,
    Etcd,
    EtcdError,
    Get,
    Put,
    WatchBatch,
    parse_endpoints,
    parse_registry_url,
    prefix_end,
)
from tests.conftest import PYTHON, free_port
from tests.fleet.etcd_cluster import EtcdCluster, etcd_cluster_fixture, needs_etcd  # noqa: F401

pytestmark = needs_etcd


async def test_put_get_range_and_delete_with_binary_keys(etcd_cluster: EtcdCluster) -> None:
    async with Etcd(etcd_cluster.urls) as etcd:
        rev = await etcd.put("/slum/tenants/a", "one")
        await etcd.put(b"/slum/tenants/\xff\x00", b"\x00\x01bin")
        await etcd.put("/slum/tenantsX", "outside the prefix")
        kv = await etcd.get("/slum/tenants/a")
        assert kv is not None and kv.value == b"one" and kv.mod_revision == rev
        assert await etcd.get("/slum/tenants/none") is None
        result = await etcd.range("/slum/tenants/", prefix=True)
        assert [k.key for k in result.kvs] == [b"/slum/tenants/\xff\x00", b"/slum/tenants/a"][::-1] or sorted(
            k.key for k in result.kvs
        ) == [b"/slum/tenants/a", b"/slum/tenants/\xff\x00"]
        assert {k.value for k in result.kvs} == {b"one", b"\x00\x01bin"}
        assert result.count == 2 and result.revision >= rev
        assert await etcd.delete("/slum/tenants/", prefix=True) == 2
        assert (await etcd.range("/slum/", prefix=True)).count == 1


def test_prefix_end() -> None:
    assert prefix_end(b"/slum/") == b"/slum0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


async def test_compare_and_swap_lets_exactly_one_concurrent_writer_win(etcd_cluster: EtcdCluster) -> None:
    async with Etcd(etcd_cluster.urls) as etcd:
        winners: list[str] = []

        async def claim(who: str) -> None:
            result = await etcd.txn(
                [Compare.absent("/slum/claim")], [Put("/slum/claim", who)], [Get("/slum/claim")]
            )
            if result.succeeded:
                winners.append(who)
            else:
                assert result.responses[0][0].value != who.encode()

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(claim, f"w{i}")
        assert len(winners) == 1
        kv = await etcd.get("/slum/claim")
        assert kv is not None and kv.value == winners[0].encode()

        # a swap on a stale revision fails; on the current one it succeeds
        stale = await etcd.txn(
            [Compare.unchanged("/slum/claim", kv.mod_revision - 1)], [Delete("/slum/claim")]
        )
        assert not stale.succeeded and await etcd.get("/slum/claim") is not None
        fresh = await etcd.txn(
            [Compare.unchanged("/slum/claim", kv.mod_revision)],
            [Delete("/slum/claim"), Put("/slum/moved", "x")],
        )
        assert fresh.succeeded and await etcd.get("/slum/claim") is None


async def test_watch_sees_changes_and_catches_up_from_a_revision(etcd_cluster: EtcdCluster) -> None:
    async with Etcd(etcd_cluster.urls) as etcd:
        first = await etcd.put("/slum/a", "1")
        await etcd.put("/slum/b", "2")
        await etcd.delete("/slum/a")
        seen: list[tuple[str, bytes, int]] = []
        with trio.fail_after(10):
            # from an old revision: the history since then, in order
            async with etcd.watch("/slum/", prefix=True, start_revision=first) as batches:
                async for batch in batches:
                    seen += [(e.type, e.kv.key, e.kv.mod_revision) for e in batch.events]
                    if len(seen) == 3:
                        break
        assert [(t, k) for t, k, _ in seen] == [
            ("PUT", b"/slum/a"),
            ("PUT", b"/slum/b"),
            ("DELETE", b"/slum/a"),
        ]
        assert [r for _, _, r in seen] == sorted(r for _, _, r in seen)

        # live: a change reaches the watcher fast
        latencies: list[float] = []
        async with etcd.watch("/slum/", prefix=True) as batches:
            for i in range(5):
                sent = time.monotonic()
                await etcd.put("/slum/live", str(i))
                batch: WatchBatch = await batches.__anext__()
                while not batch.events:  # the creation's empty batch
                    batch = await batches.__anext__()
                latencies.append(time.monotonic() - sent)
                assert batch.events[0].kv.value == str(i).encode()
        assert max(latencies) < 1.0


async def test_a_watch_from_a_compacted_revision_says_so(etcd_cluster: EtcdCluster) -> None:
    async with Etcd(etcd_cluster.urls) as etcd:
        for i in range(5):
            rev = await etcd.put("/slum/x", str(i))
        await etcd.call("kv/compaction", {"revision": str(rev), "physical": True})
        with pytest.raises(Compacted) as caught, trio.fail_after(10):
            async with etcd.watch("/slum/", prefix=True, start_revision=2) as batches:
                async for _ in batches:
                    pass
        assert caught.value.compact_revision == rev
        with pytest.raises(Compacted):
            await etcd.range("/slum/", prefix=True, revision=2)


async def test_a_key_on_a_lease_lives_while_kept_alive_and_goes_when_it_expires(
    etcd_cluster: EtcdCluster,
) -> None:
    async with Etcd(etcd_cluster.urls) as etcd:
        lease = await etcd.grant(2)
        await etcd.put("/slum/alive", "yes", lease=lease)
        for _ in range(4):
            await trio.sleep(0.8)
            assert await etcd.keepalive(lease) > 0
        assert await etcd.get("/slum/alive") is not None
        with trio.fail_after(10):
            while True:
                if await etcd.get("/slum/alive") is None:
                    break
                await trio.sleep(0.2)
        assert await etcd.keepalive(lease) == 0
        # a refusal that is not about reachability is not retried elsewhere, and says why
        with pytest.raises(EtcdError) as caught:
            await etcd.put("/slum/x", "y", lease=lease)
        assert "lease not found" in caught.value.message
        await etcd.revoke(lease)  # already gone: not an error


async def test_one_member_down_is_invisible_two_down_is_unavailable_with_the_reason(
    etcd_cluster: EtcdCluster,
) -> None:
    m0, m1, _ = etcd_cluster.members
    async with Etcd(etcd_cluster.urls, timeout=1.0) as etcd:
        await etcd.put("/slum/k", "0")
        m0.kill()  # the endpoint tried first
        await etcd.put("/slum/k", "1")
        kv = await etcd.get("/slum/k")
        assert kv is not None and kv.value == b"1"

        m1.kill()
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            await etcd.put("/slum/k", "2")
        assert caught.value.status == 503
        assert "etcd unavailable" in caught.value.message
        assert f"{m0.url}: connection refused" in caught.value.message
        assert time.monotonic() - started < 5
        # the survivor's own copy can still be read, without quorum
        stale = await etcd.range("/slum/k", serializable=True)
        assert stale.kvs[0].value == b"1"

        m0.start()
        m1.start()
        etcd_cluster.wait_healthy()
        with trio.fail_after(15):
            while True:
                try:
                    await etcd.put("/slum/k", "3")
                    break
                except Unavailable:
                    await trio.sleep(0.2)
        kv = await etcd.get("/slum/k")
        assert kv is not None and kv.value == b"3"


async def test_a_watch_ends_when_its_member_loses_quorum(etcd_cluster: EtcdCluster) -> None:
    m0, m1, m2 = etcd_cluster.members
    async with Etcd([m2.url]) as etcd:
        with pytest.raises(Unavailable) as caught, trio.fail_after(15):
            async with etcd.watch("/slum/", prefix=True) as batches:
                async for batch in batches:
                    if not batch.events:  # created: now take the quorum away
                        m0.kill()
                        m1.kill()
        assert "no leader" in caught.value.message


async def test_no_member_reachable() -> None:
    ports = [free_port(), free_port()]
    async with Etcd([f"http://127.0.0.1:{p}" for p in ports], timeout=0.5) as etcd:
        with pytest.raises(Unavailable) as caught:
            await etcd.get("/slum/x")
        for p in ports:
            assert f"http://127.0.0.1:{p}: connection refused" in caught.value.message
        with pytest.raises(Unavailable):
            async with etcd.watch("/slum/", prefix=True):
                pass


def test_parse_endpoints() -> None:
    assert parse_endpoints("etcd://a:2379,10.0.0.2:2380") == ["http://a:2379", "http://10.0.0.2:2380"]
    assert parse_endpoints("etcd://[::1]:2379") == ["http://[::1]:2379"]
    for bad in (
        "etcd://",
        "etcd://host",
        "etcd://host:0",
        "etcd://host:99999",
        "ftp://h:1",
        "etcd://u@h:1",
        "etcd://h:x",
    ):
        with pytest.raises(BadRequest):
            parse_endpoints(bad)


def test_parse_registry_url_with_a_prefix() -> None:
    assert parse_registry_url("etcd://a:1,b:2") == (["http://a:1", "http://b:2"], "/slum/")
    assert parse_registry_url("etcd://a:1/fleet-one") == (["http://a:1"], "/fleet-one/")
    with pytest.raises(BadRequest):
        parse_registry_url("etcd://a:1/x y")


def test_a_registry_that_is_not_etcd_is_refused(tmp_path: Path) -> None:
    from slum.config import parse
    from slum.errors import ConfigError

    assert parse('[settings]\nregistry = " etcd://a:1 "\n').settings.registry == "etcd://a:1"
    assert parse("[settings]\n").settings.registry == ""
    with pytest.raises(ConfigError, match="registry"):
        parse('[settings]\nregistry = "zk://a:1"\n')
    # on the command line: one line, exit 2, nothing started
    r = subprocess.run(
        [
            PYTHON,
            "-m",
            "slum",
            "serve",
            "--port",
            str(free_port()),
            "--database",
            str(tmp_path / "s.db"),
            "--registry",
            "etcd://nohost",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "invalid etcd endpoint" in r.stderr and "Traceback" not in r.stderr
