"""Service processes started with ``est run SERVICE``: used by ``est up``, the tests and the benchmark."""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def serve(service: str) -> None:
    """Run one service in this process until it is stopped, configured from the EST_* environment."""
    import uvicorn
    from est_shared.adapters.serving import ServerLimits, server_options

    module = importlib.import_module(f"est_{service}.app")
    settings = module.Settings()
    application = module.create_app(settings)
    uvicorn.run(application, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                lifespan="on", timeout_graceful_shutdown=10, **server_options(ServerLimits.of(settings)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServiceProcess:
    """One service process started with ``est run``; can be killed and restarted on the same port."""

    name: str
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> ServiceProcess:
        env = dict(os.environ, **self.env, **{f"EST_{self.name.upper()}_PORT": str(self.port)})
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "est_cli.main", "run", self.name], env=env,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready:\n{self.log.read_text(errors='replace')[-3000:]}")

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss_mb(self) -> float:
        """Peak resident memory (VmHWM) of the process, in MB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

