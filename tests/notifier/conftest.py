"""Fixtures of the notifier tests (helpers live in tests/notifier/support.py beside this file)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from est_shared.natsserver import NatsServer

from tests.notifier.support import Org, make_org


@pytest.fixture
def org() -> Org:
    """An organisation with ids of this test's own."""
    return make_org()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """The notifier tests' own NATS server (overrides the session one): organisation events that other
    folders' tests leave on the shared server carry higher versions and would shadow the small
    organisations these tests apply, when the folders run in one session."""
    server = NatsServer(tmp_path_factory.mktemp("nats-notifier"), log_file=None).start()
    yield server
    server.stop()
