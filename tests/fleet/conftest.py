"""Fleet fixtures: a real 3-member etcd cluster on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet.etcd_cluster import ETCD, EtcdCluster


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A fresh cluster per test: tests kill and restart its members."""
    if ETCD is None:  # the tests that use this are marked needs_etcd; this is a safety net
        pytest.skip("etcd is not installed")
    cluster = EtcdCluster(tmp_path / "etcd")
    (tmp_path / "etcd").mkdir()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
