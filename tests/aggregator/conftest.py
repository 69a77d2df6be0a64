"""Fixtures of the aggregator tests (their helpers live in support.py beside this file)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from est_shared.bus import ensure_streams

from tests.aggregator.support import Bus, World, make_world


@pytest.fixture
def world() -> World:
    return make_world()


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    nc = await nats.connect(nats_url)
    await ensure_streams(nc.jetstream())
    try:
        yield Bus(nc)
    finally:
        await nc.close()
