"""The OpenAPI document comes from the route table: every route is in it, under each prefix."""

from __future__ import annotations

import re
from typing import Any

import slum.web.create_app  # noqa: F401  (imports every resource module: fills the table)
from slum.web.openapi import document
from slum.web.routes import ROUTES


def test_every_route_is_described_once_per_prefix() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    described = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    expected = set()
    for route in ROUTES:
        for prefix in route.prefixes:
            expected.add((route.method, re.sub(r"<(\w+)>", r"{\1}", prefix + route.path)))
    assert described == expected
    assert ("GET", "/_/api/openapi.json") in described
    # the fleet routes answer under both prefixes from one declaration
    assert {("POST", "/api/tenants"), ("POST", "/_/api/tenants")} <= described
    # deploys: both prefixes, and tenement's own paths under /api only
    assert {
        ("POST", "/api/deploys"),
        ("POST", "/_/api/deploys"),
        ("POST", "/api/deploy"),
        ("POST", "/api/route"),
        ("POST", "/_/api/services/{service}/route"),
    } <= described
    assert ("POST", "/_/api/deploy") not in described
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_types_become_schemas() -> None:
    doc = document()
    schemas: dict[str, Any] = doc["components"]["schemas"]
    instance = schemas["Instance"]
    assert {"id", "status", "port", "url"} <= set(instance["required"])
    assert "history" not in instance["required"]  # NotRequired
    assert instance["properties"]["port"] == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert "stopped" in instance["properties"]["status"]["enum"]
    spawn = doc["paths"]["/_/api/instances"]["post"]
    assert spawn["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SpawnRequest"
    }
    assert schemas["SpawnRequest"]["required"] == ["service"]
    assert "201" in spawn["responses"] and "4XX" in spawn["responses"]
    logs = doc["paths"]["/_/api/logs"]["get"]
    assert "warn+" in {p["name"]: p for p in logs["parameters"]}["level"]["schema"]["enum"]
    assert doc["paths"]["/api/health"]["get"]["security"] == []  # public
