"""The dashboard's types (spa/src/lib/types.ts) agree with the OpenAPI description the server
generates: every field the SPA reads exists, and every field the server always sends is typed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import slum.web.create_app  # noqa: F401  (fills the route table)
from slum.web.openapi import document

TYPES = Path(__file__).parents[2] / "spa" / "src" / "lib" / "types.ts"
# TS interface -> schema, where the names differ (the TS side splits detail views out)
SAME_AS = {"InstanceDetail": "Instance", "TenantDetail": "Tenant"}
_INTERFACE = re.compile(r"^export interface (\w+)(?: extends (\w+))? \{\n(.*?)^\}", re.M | re.S)
_FIELD = re.compile(r"^\t(\w+)(\??):", re.M)


def interfaces() -> dict[str, dict[str, bool]]:
    """name -> {field: optional}, with what an interface extends."""
    found: dict[str, dict[str, bool]] = {}
    for name, parent, body in _INTERFACE.findall(TYPES.read_text()):
        fields = dict(found.get(parent, {}))
        fields.update({f: bool(opt) for f, opt in _FIELD.findall(body)})
        found[name] = fields
    return found


@pytest.mark.skipif(not TYPES.exists(), reason="the spa sources")
def test_types_ts_matches_openapi() -> None:
    schemas = document()["components"]["schemas"]
    checked = []
    for name, fields in interfaces().items():
        schema = schemas.get(SAME_AS.get(name, name))
        if schema is None:
            continue  # a type of the SPA's own (query forms, chart series)
        props, required = set(schema["properties"]), set(schema.get("required", ()))
        unknown = set(fields) - props
        assert not unknown, f"types.ts {name} has fields the API does not send: {unknown}"
        untyped = required - set(fields)
        assert not untyped, f"types.ts {name} lacks fields the API always sends: {untyped}"
        checked.append(name)
    assert {
        "Instance",
        "Server",
        "Tenant",
        "LogEntry",
        "Overview",
        "MetricSnapshot",
        "MetricHistory",
        "LiveMetrics",
        "SpawnRequest",
        "NewServer",
        "NewTenant",
        "ServerView",
        "TenantState",
        "FleetLogEntry",
    } <= set(checked)
