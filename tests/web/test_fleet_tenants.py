"""Which instance a node's answer holds for a tenant, and what a tenant says when its node was
not asked or did not answer (web/fleet_tenants.py)."""

from __future__ import annotations

from slum.store.registry import Server, Tenant
from slum.web.fleet_tenants import _state

LOCAL = Server(
    id="local", name="local", address="local", created_at="", status="online", capacity=None, tenant_count=1
)
FAR = Server(
    id="s1",
    name="far",
    address="http://127.0.0.1:9",
    created_at="",
    status="online",
    capacity=None,
    tenant_count=1,
)
BAD = Server(
    id="s2",
    name="bad",
    address="not an address",
    created_at="",
    status="online",
    capacity=None,
    tenant_count=1,
)


def tenant(server: Server, service: str | None = None) -> Tenant:
    return Tenant(
        id="bob",
        server_id=server.id,
        server=server.name,
        service=service,
        config=None,
        status="active",
        created_at="",
    )


def inst(service: str, name: str) -> dict[str, object]:
    return {"id": f"{service}:{name}", "service": service, "name": name, "status": "healthy"}


def test_a_remote_tenant_without_a_service_is_whichever_service_its_node_runs_it_under() -> None:
    answer = [inst("web", "alice"), inst("api", "bob")]
    state = _state(tenant(FAR), FAR, answer, default_service="web")
    assert state["instance"] is not None
    assert state["instance"]["id"] == "api:bob"
    assert state["instance"]["server"] == "far"  # type: ignore[typeddict-item]
    assert state["server_status"] == "online" and state["error"] is None


def test_a_local_tenant_without_a_service_is_the_default_services_only() -> None:
    answer = [inst("api", "bob")]
    assert _state(tenant(LOCAL), LOCAL, answer, default_service="web")["instance"] is None
    answer.append(inst("web", "bob"))
    found = _state(tenant(LOCAL), LOCAL, answer, default_service="web")["instance"]
    assert found is not None and found["id"] == "web:bob"


def test_a_named_service_must_match_and_no_instance_is_not_an_error() -> None:
    state = _state(tenant(FAR, "web"), FAR, [inst("api", "bob")], default_service=None)
    assert state["instance"] is None and state["error"] is None


def test_no_answer_says_why_and_a_bad_address_reads_invalid() -> None:
    state = _state(tenant(FAR), FAR, "server far is offline", default_service="web")
    assert state["instance"] is None and state["error"] == "server far is offline"
    assert _state(tenant(BAD), BAD, "x", default_service="web")["server_status"] == "invalid"
    assert _state(tenant(FAR), None, "gone", default_service="web")["server_status"] == "unknown"
