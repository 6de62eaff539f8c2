"""The fleet: servers, tenants placed on them, domain aliases."""
