from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from slum.fleet.service import FleetService
from slum.store.db import Store
from slum.store.registry import RouteSnapshot, SqliteRegistry


class Published(list[RouteSnapshot]):
    """What the service handed to the edge, in order."""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "slum.db")
    yield s
    s.close()


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
async def fleet(store: Store, published: Published) -> FleetService:
    service = FleetService(SqliteRegistry(store), publish=published.append)
    await service.registry.ensure_local()
    return service
