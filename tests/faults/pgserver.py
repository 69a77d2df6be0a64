"""PostgreSQL servers a test may stop and start: a private throwaway one (initdb on a free port) or, only when
``EST_TEST_PG_RESTART=1``, this machine's shared server (``pg_ctlcluster``), which other tests use too."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from est_shared.testing import free_port

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _bindir() -> Path | None:
    """The directory of initdb/pg_ctl (Debian keeps them in /usr/lib/postgresql/N/bin), or None."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    return Path(dirs[-1]) if dirs and Path(dirs[-1], "initdb").exists() else None


def private_available() -> str | None:
    """Why a private server cannot be made here, or None when it can."""
    if _bindir() is None:
        return "no initdb/pg_ctl on this machine"
    if ROOT:
        if not shutil.which("runuser"):
            return "running as root without runuser (initdb refuses root)"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run initdb as"
    return None


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (trust auth, loopback, fsync off), stopped and removed after."""

    def __init__(self) -> None:
        bindir = _bindir()
        assert bindir is not None
        self.bindir = bindir
        self.port = free_port()
        # not under pytest's tmp dir: that is 0700 root, and the server runs as postgres when we are root
        self.base = Path(tempfile.mkdtemp(prefix="est-pg-"))
        self.data = self.base / "data"
        if ROOT:
            shutil.chown(self.base, "postgres", "postgres")
            os.chmod(self.base, 0o700)

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if ROOT:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120, cwd=self.base)

    def init(self) -> PrivatePostgres:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C",
                  "--no-sync")
        return self

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-w", "-t", "60", "-o", opts,
                  "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.base, ignore_errors=True)


def machine_available() -> str | None:
    """Why this machine's server cannot be restarted by a test, or None when it can (and is allowed to)."""
    if os.environ.get("EST_TEST_PG_RESTART") != "1":
        return "restarts the machine's shared PostgreSQL: set EST_TEST_PG_RESTART=1 (and run nothing else on it)"
    if not os.path.isdir("/etc/postgresql") or not shutil.which("pg_ctlcluster"):
        return "no pg_ctlcluster cluster on this machine"
    return None


class MachinePostgres:
    """This machine's shared server, stopped and started with pg_ctlcluster (Debian)."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        versions = sorted(os.listdir("/etc/postgresql"))
        self.version = versions[-1]

    def _ctl(self, action: str) -> None:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", self.version, "main", action], check=True,
                       capture_output=True, timeout=120)

    def stop(self) -> None:
        self._ctl("stop")

    def start(self) -> None:
        self._ctl("start")
