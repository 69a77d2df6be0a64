"""Architecture rules kept by tools: services never import each other; shared imports no service;
domain modules import no framework."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = {"fastapi", "faststream", "nats", "sqlalchemy", "starlette", "uvicorn", "httpx", "aiosmtplib"}


def test_import_linter_contracts_hold() -> None:
    exe = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(exe), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_domain_modules_import_no_framework() -> None:
    domains = list(ROOT.glob("services/*/src/**/domain.py")) + list(ROOT.glob("services/*/src/**/domain/*.py"))
    assert domains, "every service has a domain module"
    for path in domains:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FRAMEWORKS, f"{path.relative_to(ROOT)} imports {name}"
