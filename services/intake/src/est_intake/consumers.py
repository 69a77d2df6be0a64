"""Intake consumers: none of its own; the organisation feed is wired by the shared runtime."""

from __future__ import annotations

from est_shared.runtime import ServiceRuntime


def register_consumers(runtime: ServiceRuntime) -> None:
    """The intake produces events; it only reads ``est.org.changed`` (via ``runtime``, for other replicas)."""
    del runtime
