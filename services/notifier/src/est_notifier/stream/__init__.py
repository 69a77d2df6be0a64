"""The live stream for dashboards: ``GET /v1/stream`` as server-sent events."""
