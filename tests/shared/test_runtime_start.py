"""Start-up steps against JetStream are retried while a cluster has no stream leaders yet."""

from __future__ import annotations

import nats.errors
import pytest
from est_shared.runtime import ServiceRuntime
from est_shared.settings import ServiceSettings


def _runtime() -> ServiceRuntime:
    return ServiceRuntime(name="t", title="T", description="t", settings=ServiceSettings(nats_url="nats://127.0.0.1:1"))


async def test_a_start_up_step_is_retried_until_jetstream_answers() -> None:
    calls: list[int] = []

    async def step() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise nats.errors.TimeoutError

    await _runtime().until_ready("do it", step, timeout=10)
    assert len(calls) == 3


async def test_a_start_up_step_gives_up_loudly_after_its_timeout() -> None:
    async def step() -> None:
        raise nats.errors.TimeoutError

    with pytest.raises(nats.errors.TimeoutError):
        await _runtime().until_ready("do it", step, timeout=0.3)


async def test_other_errors_are_not_retried() -> None:
    async def step() -> None:
        raise ValueError("a bug, not a slow cluster")

    with pytest.raises(ValueError):
        await _runtime().until_ready("do it", step, timeout=10)
