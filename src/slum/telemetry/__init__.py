"""What slum measures: request metrics and per-second rings (requests), the per-second sampler of
processes and host (sampler), and the per-minute history kept in SQLite (history). The HTTP views
of all three are in web/metrics.py."""
