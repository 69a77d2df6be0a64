"""Fixtures for the analysis service tests: a running service for one municipality."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from est_analysis.app import Settings, create_app
from est_shared.testing import serve


@pytest.fixture
def service(tmp_path: Path, nats_url: str) -> Callable[..., Any]:
    """``async with service(m, **settings) as (base_url, app):`` runs the analysis service for municipality m."""

    @asynccontextmanager
    async def run(m: str, **overrides: Any) -> AsyncIterator[tuple[str, Any]]:
        values: dict[str, Any] = {"nats_url": nats_url, "data_dir": tmp_path / m, "durable": f"analysis-{m}",
                                  "municipality_filter": m, "auto_compile": False, "outbox_interval_seconds": 0.1}
        values.update(overrides)
        app = create_app(Settings(**values))
        async with serve(app) as base_url:
            yield base_url, app

    return run
