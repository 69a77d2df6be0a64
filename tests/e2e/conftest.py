"""Fixtures for end-to-end tests: the whole system started with ``est up`` as a subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support import System, e2e_org, start_system


@pytest.fixture
def org_file(tmp_path: Path) -> Path:
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(e2e_org(), allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def system(tmp_path: Path, org_file: Path) -> Iterator[System]:
    s = start_system(tmp_path / "var", org_file)
    yield s
    s.stop()


