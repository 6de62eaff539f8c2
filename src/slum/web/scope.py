"""What a tenant-scoped token may see: the views' side of scoped tokens.

A scoped token sees only its tenant's instances (named after the tenant: `service:{tenant}`),
their logs and their metrics. Filters narrow within the scope and can never widen it; fleet,
config and token endpoints need an unscoped token.
"""

from __future__ import annotations

from slum.errors import SlumError
from slum.store.logs import LogQuery


class OutOfScope(SlumError):
    status = 403

# --- SHIM (until the scoped tokens of web/auth.py are merged): full access for every token.
# The three names are the ones web/auth.py provides; once it does, the import succeeds and the
# fallbacks below are dead code to delete.
try:
    from slum.web.auth import (  # type: ignore[attr-defined]
        check_instance,
        check_tenant,
        require_unscoped,
        scope_tenant,
    )
except ImportError:  # pragma: no cover - replaced on merge
    def scope_tenant() -> str | None:  # type: ignore[misc]
        return None

    def require_unscoped() -> None:  # type: ignore[misc]
        if scope_tenant() is not None:
            raise OutOfScope("this token is scoped to one tenant")

    def check_instance(instance_id: str) -> None:  # type: ignore[misc]
        tenant = scope_tenant()
        if tenant is not None and instance_id.partition(":")[2] != tenant:
            raise OutOfScope(f"instance {instance_id} is outside this token's scope")

    def check_tenant(tenant_id: str | None) -> None:  # type: ignore[misc]
        tenant = scope_tenant()
        if tenant is not None and tenant_id != tenant:
            raise OutOfScope(f"tenant {tenant_id} is outside this token's scope")
# --- end of SHIM


def visible(instance_id: str) -> bool:
    """Whether the current request may see this instance."""
    try:
        check_instance(instance_id)
    except SlumError:
        return False
    return True


def scoped(q: LogQuery) -> LogQuery:
    """The query narrowed to the token's scope: its tenant, and only instances in scope."""
    tenant = scope_tenant()
    if tenant is None:
        return q
    if q.tenant_id is not None:
        check_tenant(q.tenant_id)
    if q.instance_id is not None:
        check_instance(q.instance_id)
    q.tenant_id = tenant
    return q


__all__ = ["check_instance", "check_tenant", "require_unscoped", "scope_tenant", "scoped",
           "visible"]
