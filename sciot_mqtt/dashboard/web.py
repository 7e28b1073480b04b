"""The dashboard's web server (the one module that uses aiohttp): the static page, and the
fleet pushed to every open tab as Server-Sent Events.

Every tab gets the whole snapshot when it connects and again whenever the fleet changed, at
most every `push_interval` seconds: a snapshot of a few hundred devices is small, and a page
that always holds the whole picture needs no merging logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from importlib import resources
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from sciot_mqtt.errors import ConfigurationError

from .feed import BrokerFeed

STATIC = resources.files("sciot_mqtt.dashboard") / "static"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


class DashboardServer:
    """Serves the page on `host:port` (port 0: any free one) while entered."""

    def __init__(
        self, feed: BrokerFeed, host: str, port: int, *, push_interval: float = 0.5
    ) -> None:
        self.feed = feed
        self.host = host
        self.port = port
        self.push_interval = push_interval
        self._runner: web.AppRunner | None = None
        self._subscribers: set[asyncio.Queue[bool]] = set()  # True: close the stream
        self._fanout: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/events", self._events)
        app.router.add_post("/login", self._login)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:  # the port is taken, or the host is not this machine's
            await self._runner.cleanup()
            raise ConfigurationError(
                f"cannot serve the dashboard on {self.host}:{self.port}: {exc.strerror or exc}"
                " (choose another with --dashboard [HOST:]PORT)"
            ) from exc
        if self.port == 0:  # the port the system picked
            self.port = int(self._runner.addresses[0][1])
        self._fanout = asyncio.create_task(self._fan_out(), name="dashboard-fanout")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fanout is not None:
            self._fanout.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fanout
        for queue in self._subscribers:  # end the open event streams, or cleanup waits
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(True)
        if self._runner is not None:
            await self._runner.cleanup()

    def snapshot(self) -> dict[str, Any]:
        body = self.feed.state.snapshot()
        body["broker"] = {
            "status": self.feed.status,
            "detail": self.feed.detail,
            "account": self.feed.account,
            "address": str(self.feed.broker),
        }
        return body

    async def _fan_out(self) -> None:
        """Wake every open stream when the fleet changed, at most every push_interval."""
        while True:
            await self.feed.changed.wait()
            self.feed.changed.clear()
            for queue in self._subscribers:
                if queue.empty():
                    queue.put_nowait(False)
            await asyncio.sleep(self.push_interval)

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return self._file("index.html")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        return self._file(request.match_info["name"])

    def _file(self, name: str) -> web.Response:
        suffix = name[name.rfind(".") :] if "." in name else ""
        item = STATIC / name
        if "/" in name or suffix not in _TYPES or not item.is_file():
            raise web.HTTPNotFound()
        return web.Response(
            body=item.read_bytes(),
            content_type=_TYPES[suffix],
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[bool] = asyncio.Queue(maxsize=1)
        self._subscribers.add(queue)
        try:
            while True:
                data = json.dumps(self.snapshot(), separators=(",", ":"), allow_nan=False)
                await response.write(f"data: {data}\n\n".encode())
                if await queue.get():
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._subscribers.discard(queue)
        return response

    async def _login(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            password = body["password"]
        except (ValueError, KeyError, TypeError):
            raise web.HTTPBadRequest(text='send {"password": "..."}') from None
        if not isinstance(password, str) or not password or len(password) > 1024:
            raise web.HTTPBadRequest(text="the password is a non-empty string")
        self.feed.login(password)
        return web.json_response({"ok": True})
