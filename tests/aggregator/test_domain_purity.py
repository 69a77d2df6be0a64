"""The aggregator's rules import no framework (``tests/test_architecture.py`` looks for domain modules at a
service package's top; the aggregator keeps its rules in the package ``pictures/domain/``)."""

from __future__ import annotations

import ast
from pathlib import Path

import est_aggregator.pictures.domain as domain

FRAMEWORKS = {"fastapi", "faststream", "nats", "sqlalchemy", "starlette", "uvicorn", "httpx", "aiosmtplib"}


def test_the_picture_rules_import_no_framework() -> None:
    assert domain.__file__ is not None
    paths = sorted(Path(domain.__file__).parent.glob("*.py"))
    assert len(paths) > 1
    for path in paths:
        tree = ast.parse(path.read_text())
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        assert not [name for name in imported if name.split(".")[0] in FRAMEWORKS], path.name
