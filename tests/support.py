"""Helpers shared by the whole suite: polling (``eventually``, ``wait_for``), a webhook receiver, raw sockets,
the whole system or single services as real processes (``est up``, ``est run SERVICE``)."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from est_shared.testing import free_port

SERVICES = ("intake", "aggregator", "notifier", "analysis", "web")

TRYGG_1: dict[str, Any] = {
    "id": "vaxjo-trygg", "version": 1, "name_sv": "Växjös trygghetslista", "name_en": "Växjö's safety list",
    "groups": [{"code": "miljo", "label_sv": "Fysisk miljö", "label_en": "Physical environment"},
               {"code": "manniskor", "label_sv": "Människor", "label_en": "People"}],
    "items": [
        {"code": "klotter_tag", "label_sv": "Klotter och taggar", "label_en": "Graffiti and tags", "answer": "level",
         "group": "miljo", "help_sv": "Räkna inte lagliga väggar.", "help_en": "Do not count legal walls.",
         "scale": {0: {"sv": "rent", "en": "clean"}, 1: {"sv": "lite", "en": "a little"},
                   2: {"sv": "mycket", "en": "a lot"}, 3: {"sv": "överallt", "en": "everywhere"}}},
        {"code": "trasig_lampa", "label_sv": "Trasiga lampor", "label_en": "Broken lamps", "answer": "count",
         "group": "miljo", "max_count": 50},
        {"code": "oro_natet", "label_sv": "Oro på nätet", "label_en": "Unrest online", "answer": "boolean",
         "group": "manniskor", "places": False, "help_sv": "Rykten i sociala medier.",
         "help_en": "Rumours on social media."},
        {"code": "ovrigt", "label_sv": "Annat som oroar", "label_en": "Anything else of concern", "answer": "level"},
    ],
}
"""A municipality's own checklist in an organisation file (the shape GET /v1/checklists/{ref} gives): two
groups, help texts, a level scale of its own, an item without places and one of no group."""


@dataclass
class System:
    proc: subprocess.Popen[str]
    urls: dict[str, str]
    data_dir: Path
    log: Path
    log_offset: int = 0  # where this run's lines begin in ``log`` (a restart appends)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ready(self, timeout: float = 90) -> System:
        """Wait until ``est up`` says it is running; fail with its output if it exits or takes too long."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"est up exited with {self.proc.returncode}:\n{self.output()[-4000:]}")
            if b"Running. Press Ctrl-C to stop." in self.log.read_bytes()[self.log_offset:]:
                return self
            time.sleep(0.1)
        self.stop(signal.SIGKILL)
        raise AssertionError(f"est up did not start in {timeout}s:\n{self.output()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"est up did not stop in {timeout}s:\n{self.output()[-3000:]}") from None
        return self.proc.returncode


def e2e_org(suffix: str = "") -> dict[str, Any]:
    return {
        "municipalities": [{"id": "vaxjo", "name": "Växjö kommun", "analysis_period": "tertial",
                            "areas": [{"id": "araby", "name": "Araby", "cadence": "weekly",
                                       "places": ["centrum", "skolgarden", "parkeringen"]},
                                      {"id": "dalbo", "name": "Dalbo", "cadence": "weekly", "places": ["torget"]}]}],
        "actors": [{"id": "vaxjohem", "name": "Växjöhem AB", "kind": "property_company"},
                   {"id": "kommunen", "name": "Växjö kommun", "kind": "municipality"}],
        "people": [
            {"id": "anna", "name": "Anna Andersson", "actor": "vaxjohem", "email": "anna@example.org",
             "roles": ["reporter"], "areas": ["araby"], "token": "t-anna"},
            {"id": "lena", "name": "Lena Lind", "actor": "kommunen", "email": "lena@example.org",
             "roles": ["key_function"], "areas": ["vaxjo"], "token": "t-lena"},
            {"id": "admin", "name": "Admin", "actor": "kommunen", "roles": ["admin"], "areas": ["vaxjo"],
             "token": "t-admin"},
        ],
    }


def start_system(data_dir: Path, org_file: Path | None, *, ports: dict[str, int] | None = None,
                 extra_env: dict[str, str] | None = None, demo: bool = False, timeout: float = 90) -> System:
    """``est up`` as a subprocess, once it says it is running."""
    return spawn_system(data_dir, org_file, ports=ports, extra_env=extra_env, demo=demo).ready(timeout)


def spawn_system(data_dir: Path, org_file: Path | None, *, ports: dict[str, int] | None = None,
                 extra_env: dict[str, str] | None = None, demo: bool = False) -> System:
    """``est up`` as a subprocess, still starting: ``System.ready`` waits for it (so a fixture can start the
    next test's system while a test runs)."""
    ports = ports or {s: free_port() for s in SERVICES}
    env = dict(os.environ, **{f"EST_{s.upper()}_PORT": str(p) for s, p in ports.items()}, **(extra_env or {}))
    env.pop("EST_NATS_URL", None)
    env.setdefault("EST_NOTIFIER_WEBHOOK_ALLOW", "127.0.0.1/32")  # the tests' webhook receivers are on loopback
    env["EST_GC_TUNING"] = "true"  # `est up` runs as users run it (the suite turns tuning off in-process)
    args = [sys.executable, "-m", "est_cli.main", "up", "--data-dir", str(data_dir)]
    if org_file:
        args += ["--org", str(org_file)]
    if demo:
        args.append("--demo")
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "est-up.out"
    offset = log.stat().st_size if log.exists() else 0  # a restart appends: look only at this run's lines
    with open(log, "a") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
    return System(proc, {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}, data_dir, log, offset)


async def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until ``check()`` (a function or a coroutine function) gives something truthy; return it.

    The one poll-until of the async tests; fails with the last value seen after ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while True:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if loop.time() > deadline:
            raise AssertionError(f"condition not met in {timeout} s; last value: {last!r}")
        await asyncio.sleep(interval)


def wait_for(fn: Any, timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll until ``fn()`` returns a truthy value; return it (the one poll-until of blocking tests)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (httpx.HTTPError, AssertionError, KeyError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out; last value: {last!r}")


class WebhookReceiver:
    """A real HTTP webhook receiver on loopback (``/hook``), in a thread of its own; records every request.

    ``delay`` makes it a slow endpoint: the request is recorded, the answer comes later (or never)."""

    def __init__(self, delay: float = 0.0) -> None:
        import asyncio
        import threading

        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        self.port = free_port()
        self.received: list[dict[str, Any]] = []
        self._stop = threading.Event()

        async def hook(request: Request) -> Response:
            body = await request.body()
            self.received.append({"headers": dict(request.headers), "body": body})
            if delay:
                await asyncio.sleep(delay)
            return Response(status_code=204)

        self.app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        import asyncio

        from est_shared.testing import serve

        async with serve(self.app, self.port):
            while not self._stop.is_set():  # noqa: ASYNC110 - a threading.Event set from another thread
                await asyncio.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        wait_for(lambda: port_open(self.port), timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(5)


def child_processes(parent: int) -> list[tuple[int, str]]:
    """(pid, command line and process name) of the processes whose parent is ``parent`` (from /proc: only this
    test's own). ``est up`` forks its services, which keep its command line but are named ``est-SERVICE``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        ppid = next((line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), "")
        name = next((line.split(maxsplit=1)[1] for line in status.splitlines() if line.startswith("Name:")), "")
        if ppid == str(parent):
            found.append((int(entry.name), f"{args} [{name}]"))
    return found


def service_pid(parent: int, service: str) -> int:
    """The pid of the ``service`` process that ``est up`` (``parent``) runs: forked (named ``est-SERVICE``) or
    started as ``est run SERVICE``."""
    for pid, args in child_processes(parent):
        if f"[est-{service}]" in args or args.split(" [")[0].endswith(f" run {service}"):
            return pid
    raise AssertionError(f"no {service} process under {parent}")


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@asynccontextmanager
async def fresh_databases(postgres_admin_url: str, names: dict[str, str]) -> AsyncIterator[dict[str, str]]:
    """Create PostgreSQL databases (key -> database name), yield key -> URL, drop them afterwards."""
    import asyncpg

    dsn = postgres_admin_url.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"
    conn = await asyncpg.connect(dsn)
    try:
        for name in names.values():
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield {key: f"{postgres_admin_url}/{name}" for key, name in names.items()}
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            for name in names.values():
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def open_raw(port: int, source: str = "127.0.0.1") -> tuple[Any, Any]:
    """A raw TCP client (asyncio streams) to a loopback port, from ``source``: any 127.x address is
    this machine, and counts as a client address of its own."""
    import asyncio

    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def read_to_close(reader: Any, timeout: float = 10) -> bytes:
    """Everything a server sends until it closes or resets the connection (what came before a reset counts)."""
    import asyncio

    got = b""

    async def read() -> None:
        nonlocal got
        while chunk := await reader.read(65536):
            got += chunk

    try:
        await asyncio.wait_for(read(), timeout)
    except ConnectionError:  # reset, or a broken pipe from our own writes
        pass
    return got


async def raw_exchange(port: int, request: bytes, *, source: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """Send bytes exactly as given (no client library to tidy them up), with ``Connection: close``
    expected in them or forced by the server; return the status, the headers (lower-case) and the body."""
    reader, writer = await open_raw(port, source)
    try:
        writer.write(request)
        raw = await read_to_close(reader)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/") else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return status, headers, body
