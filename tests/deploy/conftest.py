"""Fixtures for the deployment checks: throwaway certificates from deploy/nats/make-certs.sh."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.deploy.support import DEPLOY, require_tool


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA and server certificate made by deploy/nats/make-certs.sh."""
    require_tool("openssl", "Debian package openssl")
    out = tmp_path_factory.mktemp("certs")
    subprocess.run(["sh", str(DEPLOY / "nats" / "make-certs.sh"), str(out)], check=True, capture_output=True,
                   timeout=60)
    return out
