"""The strategic rules import no framework. ``tests/test_architecture.py`` reads a service's top-level
``domain.py`` and ``domain/*.py``; the analysis keeps its rules in ``strategic/domain.py``."""

from __future__ import annotations

import ast
from pathlib import Path

import est_analysis.strategic.domain

from tests.test_architecture import FRAMEWORKS


def test_the_strategic_rules_import_no_framework() -> None:
    tree = ast.parse(Path(est_analysis.strategic.domain.__file__).read_text())
    imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert {name.split(".")[0] for name in imported} & FRAMEWORKS == set()
