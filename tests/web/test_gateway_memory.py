"""The gateway streams request bodies, so its memory stays bounded whatever is sent: ``est run web`` as a
real process in front of a service stand-in, its peak resident memory (VmHWM) read from /proc while
200 MB are refused from Content-Length, 200 MB chunked are refused as they pass the limit, and 200 MB
are streamed through to a path whose limit allows them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from est_cli.procs import ServiceProcess
from est_shared.testing import serve
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support import open_raw, read_to_close, wait_for

MB = 1_000_000
SENT = 200 * MB


async def _sink(request: Request) -> Response:
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
    except ClientDisconnect:  # the gateway abandoned a refused body
        return Response(status_code=499)
    return JSONResponse({"size": size}, status_code=201)


async def test_the_gateways_memory_stays_bounded_while_200_mb_are_refused_or_streamed(tmp_path: Path) -> None:
    async with serve(Starlette(routes=[Route("/v1/{rest:path}", _sink, methods=["POST"])])) as intake_url:
        web = ServiceProcess("web", {"EST_WEB_INTAKE_URL": intake_url, "EST_DATA_DIR": str(tmp_path),
                                     "EST_WEB_BODY_LIMITS": json.dumps({"intake/v1/upload": 300 * MB})},
                             tmp_path / "web.log")
        web.start(wait=False)  # /readyz wants every upstream; alive is enough here
        try:
            await asyncio.to_thread(wait_for, lambda: httpx.get(f"{web.url}/healthz").status_code == 200)
            async with httpx.AsyncClient(base_url=web.url, timeout=120) as http:
                assert (await http.post("/api/intake/v1/upload", content=b"x" * MB)).json() == {"size": MB}
                baseline = web.rss_mb()

                # 200 MB declared: 413 at once, and the connection closed with the body still to come
                reader, writer = await open_raw(web.port)
                writer.write(b"POST /api/intake/v1/reports HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: %d\r\n\r\n" % SENT + b"x" * MB)
                start = time.monotonic()
                raw = await read_to_close(reader, timeout=10)
                writer.close()
                assert raw.startswith(b"HTTP/1.1 413") and time.monotonic() - start < 5, raw[:80]

                # 200 MB chunked: 413 once the limit (2 MB, the services' own) is passed
                reader, writer = await open_raw(web.port)
                writer.write(b"POST /api/intake/v1/reports HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                answer = asyncio.create_task(read_to_close(reader, timeout=30))
                chunk, sent = b"%x\r\n%s\r\n" % (MB, b"x" * MB), 0
                try:
                    while not answer.done() and sent < SENT:
                        writer.write(chunk)
                        await writer.drain()
                        sent += MB
                except ConnectionError:
                    pass
                raw = await answer
                writer.close()
                assert raw.startswith(b"HTTP/1.1 413") and sent < 20 * MB, (raw[:80], sent)

                # 200 MB within a path's limit: streamed through, never held whole
                block = b"y" * MB

                async def body() -> AsyncIterator[bytes]:
                    for _ in range(SENT // MB):
                        yield block

                r = await http.post("/api/intake/v1/upload", content=body())
                assert r.status_code == 201 and r.json() == {"size": SENT}
            peak = web.rss_mb()
        finally:
            web.stop()
    assert peak - baseline < 40, f"peak resident memory grew from {baseline:.0f} to {peak:.0f} MB"
