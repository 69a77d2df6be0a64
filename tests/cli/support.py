"""Helpers for the command-line tests: ``est`` as a subprocess and a real intake process to talk to."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from est_cli.procs import ServiceProcess


def est(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``est ARGS``; with ``env``, over an environment that names no intake URL, port or address."""
    full = None
    if env is not None:
        full = {k: v for k, v in os.environ.items() if k not in ("EST_INTAKE_URL", "EST_INTAKE_PORT", "EST_HOST")}
        full.update(env)
    return subprocess.run([sys.executable, "-m", "est_cli.main", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=full)


def start_intake(tmp_path: Path, nats_url: str, org: dict[str, Any]) -> tuple[ServiceProcess, Path]:
    """An intake process (``est run intake``) with ``org`` as its start-up file, and that file."""
    first = tmp_path / "org.yaml"
    first.write_text(yaml.safe_dump(org, allow_unicode=True))
    intake = ServiceProcess("intake", {"EST_NATS_URL": nats_url, "EST_DATA_DIR": str(tmp_path / "data"),
                                       "EST_INTAKE_ORG_FILE": str(first)}, tmp_path / "intake.log").start()
    return intake, first
