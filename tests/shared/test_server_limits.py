"""The HTTP server's bounds (est_shared.serving), with real sockets on loopback: request heads that
come too slowly or are too large, and more connections from one client address than allowed, while
another client is still served; and ``est run`` applying them from the settings."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from est_cli.procs import ServiceProcess
from est_shared.adapters.serving import ServerLimits
from est_shared.http import BodySizeLimit
from est_shared.testing import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.support import open_raw, read_to_close, wait_for

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hej")


APP = Starlette(routes=[Route("/", _hello)])


async def served(port: int, source: str = "127.0.0.1") -> bool:
    reader, writer = await open_raw(port, source)
    writer.write(GET)
    try:
        head = await asyncio.wait_for(reader.readuntil(b"hej"), 5)
    finally:
        writer.close()
    return head.startswith(b"HTTP/1.1 200")


def _problem(raw: bytes) -> dict:  # type: ignore[type-arg]
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower()
    return json.loads(body)  # type: ignore[no-any-return]


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_connections_whose_request_head_does_not_complete_in_time_are_closed(http: str) -> None:
    limits = ServerLimits(header_timeout=1.0)
    async with serve(APP, limits=limits, http=http) as base:
        port = int(base.rsplit(":", 1)[1])
        idle = [await open_raw(port) for _ in range(30)]  # send nothing at all
        slow = [await open_raw(port) for _ in range(60)]  # a header byte every 0.2 s, never the blank line
        for _, writer in slow:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        start = time.monotonic()

        async def dribble(writer: asyncio.StreamWriter) -> None:
            try:
                while not writer.is_closing():
                    writer.write(b"a")
                    await writer.drain()
                    await asyncio.sleep(0.2)
            except ConnectionError:
                pass

        drips = [asyncio.create_task(dribble(w)) for _, w in slow]
        assert await served(port), "a normal request is answered meanwhile"
        answers = await asyncio.gather(*(read_to_close(r) for r, _ in idle + slow))
        elapsed = time.monotonic() - start
        await asyncio.gather(*drips)
        assert elapsed < 4.0, f"held {elapsed:.1f} s with a 1 s bound"
        assert all(a == b"" for a in answers[:30]), "an idle connection is closed without an answer"
        for raw in answers[30:]:
            assert raw.startswith(b"HTTP/1.1 408"), raw[:80]
            assert "i tid" in _problem(raw)["detail"]
        for _, writer in idle + slow:
            writer.close()


async def test_a_complete_head_is_not_timed_out_and_each_later_head_gets_its_own_bound() -> None:
    async with serve(APP, limits=ServerLimits(header_timeout=0.6)) as base:
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await open_raw(port)
        for _ in range(3):  # three requests on one keep-alive connection, 0.4 s apart: each head in time
            writer.write(GET)
            assert (await asyncio.wait_for(reader.readuntil(b"hej"), 5)).startswith(b"HTTP/1.1 200")
            await asyncio.sleep(0.4)
        writer.write(b"GET / HTTP/1.1\r\nHo")  # the fourth head never completes
        start = time.monotonic()
        raw = await read_to_close(reader)
        assert raw.startswith(b"HTTP/1.1 408") and time.monotonic() - start < 3.0
        writer.close()


async def test_a_request_head_over_the_size_bound_gets_431() -> None:
    async with serve(APP, limits=ServerLimits(max_head_bytes=8192)) as base:
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await open_raw(port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        raw = await read_to_close(reader)
        assert raw.startswith(b"HTTP/1.1 431")
        assert _problem(raw)["status"] == 431
        writer.close()
        reader, writer = await open_raw(port)
        writer.write(b"GET /" + b"p" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")  # a long path too
        assert (await read_to_close(reader)).startswith(b"HTTP/1.1 431")
        writer.close()
        assert await served(port)


async def test_more_connections_than_the_per_client_cap_are_refused_while_another_client_is_served() -> None:
    limits = ServerLimits(connections_per_client=5, trusted_proxies=())
    async with serve(APP, limits=limits) as base:
        port = int(base.rsplit(":", 1)[1])
        held = [await open_raw(port, "127.0.0.5") for _ in range(5)]
        reader, writer = await open_raw(port, "127.0.0.5")
        raw = await read_to_close(reader, timeout=5)
        assert raw.startswith(b"HTTP/1.1 429"), raw[:80]
        assert b"retry-after: 5" in raw.lower() and _problem(raw)["status"] == 429
        writer.close()
        assert await served(port, "127.0.0.6"), "another client address is served"
        assert await served(port, "127.0.0.7")

        _, first = held.pop()
        first.close()
        await first.wait_closed()
        await asyncio.sleep(0.2)  # the server sees the close
        assert await served(port, "127.0.0.5"), "a freed slot can be used again"
        for _, w in held:
            w.close()


async def test_a_trusted_proxy_is_not_held_to_the_per_client_cap() -> None:
    limits = ServerLimits(connections_per_client=2, trusted_proxies=("127.0.0.8/32",))
    async with serve(APP, limits=limits) as base:
        port = int(base.rsplit(":", 1)[1])
        held = [await open_raw(port, "127.0.0.8") for _ in range(6)]
        assert await served(port, "127.0.0.8")
        for _, w in held:
            w.close()


def test_est_run_bounds_header_time_and_connections_from_its_settings(tmp_path: Path) -> None:
    env = {"EST_HTTP_HEADER_TIMEOUT": "1", "EST_HTTP_CONNECTIONS_PER_CLIENT": "4",
           "EST_HTTP_TRUSTED_PROXIES": "", "EST_DATA_DIR": str(tmp_path), "EST_LOG_LEVEL": "WARNING",
           "EST_WEB_INTAKE_URL": "http://127.0.0.1:9", "PYTHONUNBUFFERED": "1"}
    web = ServiceProcess("web", env, tmp_path / "web.log")

    async def probe() -> None:
        slow = [await open_raw(web.port, "127.0.0.9") for _ in range(4)]
        for _, writer in slow:
            writer.write(b"GET /healthz HTTP/1.1\r\nHo")
        reader, writer = await open_raw(web.port, "127.0.0.9")
        assert (await read_to_close(reader, timeout=5)).startswith(b"HTTP/1.1 429")
        writer.close()
        start = time.monotonic()
        answers = await asyncio.gather(*(read_to_close(r) for r, _ in slow))
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers) and time.monotonic() - start < 3.0
        for _, w in slow:
            w.close()

    web.start(wait=False)  # not ready: its upstreams are not there; alive is enough
    try:
        wait_for(lambda: httpx.get(f"{web.url}/healthz", timeout=1).status_code == 200)
        asyncio.run(probe())
    finally:
        web.stop()


async def test_an_early_answer_closes_gently_while_the_client_is_still_sending_its_body() -> None:
    # closed at once with unread bytes, a connection is reset: the kernel may then drop the answer
    # (still unsent, or unread by a client that discards on reset); the server closes its side first
    app = BodySizeLimit(APP, max_bytes=1000)  # answers 413 from Content-Length, before the body
    async with serve(app) as base:
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await open_raw(port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n" + b"x" * 2_000_000)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 413")
        await asyncio.sleep(0.2)  # the server has closed its side by now
        writer.write(b"x" * 100_000)  # the client, not reading yet, goes on sending
        await writer.drain()
        rest = await asyncio.wait_for(reader.read(), 5)  # the answer's body, then an orderly end: no reset
        assert rest.startswith(b'{"type":"about:blank","title":"Request body too large"')
        writer.close()
