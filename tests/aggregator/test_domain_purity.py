"""The aggregator's rules module imports no framework (``tests/test_architecture.py`` looks for domain modules
at a service package's top; the aggregator keeps its rules in ``pictures/domain.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

import est_aggregator.pictures.domain as domain

FRAMEWORKS = {"fastapi", "faststream", "nats", "sqlalchemy", "starlette", "uvicorn", "httpx", "aiosmtplib"}


def test_the_picture_rules_import_no_framework() -> None:
    assert domain.__file__ is not None
    tree = ast.parse(Path(domain.__file__).read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    assert not [name for name in imported if name.split(".")[0] in FRAMEWORKS]
