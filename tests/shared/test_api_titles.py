"""Every service's API documents are titled one way, Swedish first: "EST Lägesbild – <name> (<service>)"."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

SERVICES = ["intake", "aggregator", "notifier", "analysis", "web"]


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_titles_its_api_the_same_way(service: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # whatever a service would write at creation lands here
    app = importlib.import_module(f"est_{service}.app").create_app()
    title = app.openapi()["info"]["title"]
    assert re.fullmatch(rf"EST Lägesbild – [a-zåäö]+ \({service}\)", title), title
