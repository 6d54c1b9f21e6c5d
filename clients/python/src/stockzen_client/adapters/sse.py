"""Server-sent events read from lines of text, as the HTML standard's event-stream parser reads them.

A small parser rather than a library: no SSE library is among the workspace's dependencies, and the
client needs only events' names and data (``retry`` and ``id`` are left out: the engine reconnects on
its own backoff and resumes from its feed checkpoint, not from an event id).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event: its name (``message`` when the stream named none) and its data."""

    kind: str
    data: str


async def server_sent_events(lines: AsyncIterable[str]) -> AsyncIterator[ServerSentEvent]:
    """The events in ``lines`` (each without its line ending), one per blank line that ends one.

    Comment lines (``:`` first, such as heartbeats) and unknown fields are skipped; several ``data``
    lines join with newlines; an event without data is not dispatched, as the standard says.
    """
    kind = ""  # the event being read: its name and its data lines
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield ServerSentEvent(kind or "message", "\n".join(data))
            kind, data = "", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            kind = value
        elif field == "data":
            data.append(value)
