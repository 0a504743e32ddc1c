"""``METRICS=host:port``: Prometheus text on a listener of its own, apart from the public port.

A deployment binds it to an internal interface (compose: the nodes' private network, never
published), so the proxy in front of the app cannot expose it. It answers ``GET /metrics`` and
nothing else, one request per connection, with a deadline on reading the request so an idle or
trickling client cannot hold a connection open. Every worker of a multi-worker ``serve`` binds
the same port (``SO_REUSEPORT``) and answers with its own registry, as ``/metrics`` does on the
app's port.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

if TYPE_CHECKING:
    from server.state import Services

# A scraper's request is a few hundred bytes; anything longer or slower is not a scraper.
REQUEST_MAX_BYTES = 8192
REQUEST_TIMEOUT_S = 5.0


def _response(status: str, content_type: str, body: bytes, *, head: bool = False) -> bytes:
    headers = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return headers.encode("ascii") + (b"" if head else body)


def handler(registry: CollectorRegistry) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
                method, _, rest = head.partition(b" ")
                target = rest.partition(b" ")[0].partition(b"?")[0]
                if method in (b"GET", b"HEAD") and target == b"/metrics":
                    reply = _response("200 OK", CONTENT_TYPE_LATEST, generate_latest(registry),
                                      head=method == b"HEAD")
                else:
                    reply = _response("404 Not Found", "text/plain; charset=utf-8", b"not found\n")
                writer.write(reply)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return serve


@asynccontextmanager
async def component(svc: Services) -> AsyncIterator[None]:
    listen = svc.settings.metrics_listen
    if svc.settings.metrics != "listen" or listen is None:
        yield
        return
    host, port = listen
    server = await asyncio.start_server(handler(svc.metrics.registry), host, port,
                                        limit=REQUEST_MAX_BYTES, reuse_port=True)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()
