"""Fixtures of the notifier tests (helpers live in notifier_helpers.py beside this file)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from notifier_helpers import Org, make_org


@pytest.fixture
def org() -> Org:
    """An organisation with ids of this test's own."""
    return make_org()
