"""The edge: slum's own HTTP/1.1 listener for tenant traffic (Hypercorn is not on this path)."""
