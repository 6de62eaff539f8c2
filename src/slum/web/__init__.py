"""slum's own HTTP API and dashboard (Quart-Trio under Hypercorn, on the control socket)."""
