"""A TCP proxy a test can cut and restore, to take a real service away from one process only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit


class CuttableProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``; :meth:`cut` drops every connection and refuses new ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.sent = bytearray()  # every byte clients sent to the service, for tests that check what reached it

    @classmethod
    def for_url(cls, url: str) -> CuttableProxy:
        """A proxy in front of the service ``url`` names (start it, then use :meth:`url`)."""
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 0)

    @classmethod
    @asynccontextmanager
    async def in_front_of(cls, url: str) -> AsyncIterator[CuttableProxy]:
        """A running proxy for the service ``url`` names, cut when the block ends."""
        proxy = cls.for_url(url)
        await proxy.start()
        try:
            yield proxy
        finally:
            await proxy.cut()

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def start(self, port: int = 0) -> None:
        """Listen (on ``port``, or a free one the first time)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port or self.port or 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop listening and drop the live connections, as if the service had gone away."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def restore(self) -> None:
        """Listen again on the same port."""
        await self.start(self.port)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, upstream_writer))
        for source, sink, record in (
            (client_reader, upstream_writer, self.sent),
            (upstream_reader, client_writer, None),
        ):
            task = asyncio.create_task(self._pipe(source, sink, record))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bytearray | None) -> None:
        try:
            while data := await source.read(65536):
                if record is not None:
                    record.extend(data)
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(sink)
            with contextlib.suppress(Exception):
                sink.transport.abort()
