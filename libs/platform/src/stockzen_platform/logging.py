"""Structured logs with request, tenant and operation context; tokens never reach them.

Two renderings of the same fields (``LOG_FORMAT``): ``json``, one object per line, for compose and
production where a collector reads them; ``console``, aligned ``key=value`` lines from structlog's
console renderer, for people reading ``make run``. Both go through :func:`_fields`, so the
redaction below holds for either.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from structlog.dev import ConsoleRenderer

_context: ContextVar[dict[str, Any] | None] = ContextVar("stockzen_log_context", default=None)

# Belt and braces: whatever a library logs, a bearer token or JWT never leaves the process.
_SECRET_PATTERNS = (
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-_=.~+/]+"), "Bearer [REDACTED]"),
    (re.compile(r"eyJ[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]*"), "[REDACTED]"),
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\",}\s]+"), r"\1[REDACTED]"),
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1[REDACTED]@"),
)


# A field whose name says it holds a secret is never written, whatever its value looks like.
_SECRET_FIELD = re.compile(
    r"(?i)(passw(or)?d|passwd|secret|token|authorization|cookie|api[_-]?key|credential|private[_-]?key|signature)"
)
REDACTED = "[REDACTED]"


def redact(text: str) -> str:
    """Remove bearer tokens, JWTs, Authorization values and URL passwords from ``text``."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any, *, depth: int = 0) -> Any:
    """``value`` with secrets removed: fields named like secrets blanked, strings scrubbed, at any depth."""
    if depth > 10:  # log payloads are shallow; anything deeper is cut rather than walked
        return "[TOO DEEP]"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and _SECRET_FIELD.search(k) else redact_value(v, depth=depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v, depth=depth + 1) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach ``fields`` (request_id, tenant_id, ...) to every log line written inside the block."""
    merged = {**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


class LogFormat(StrEnum):
    """How log lines are written (the ``LOG_FORMAT`` setting)."""

    JSON = "json"
    CONSOLE = "console"


_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord, service: str, formatter: logging.Formatter) -> dict[str, Any]:
    """A record as redacted fields: time, level, service, logger, message, context, extras, exception."""
    entry: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "service": service,
        "logger": record.name,
        "message": redact(record.getMessage()),
    }
    fields = {**(_context.get() or {}), **{k: v for k, v in vars(record).items() if k not in _RESERVED}}
    entry.update(redact_value(fields))
    if record.exc_info:
        entry["exception"] = redact(formatter.formatException(record.exc_info))
    return entry


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message, context and extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record, self._service, self), default=str)


class ConsoleFormatter(logging.Formatter):
    """One readable line per record, rendered by structlog: time, level, message, then ``key=value``."""

    def __init__(self, service: str, *, colors: bool = False) -> None:
        super().__init__()
        self._service = service
        self._render = ConsoleRenderer(colors=colors)

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record, self._service, self)
        fields.pop("color_message", None)  # uvicorn's ANSI copy of the message
        # structlog's console layout names these keys (the traceback, already redacted, is printed from
        # "exception"); the service leads the logger so `make run`'s interleaved processes can be told apart.
        event = {
            "timestamp": fields.pop("time")[11:23],  # the time of day is enough on a terminal
            "level": fields.pop("level"),
            "event": fields.pop("message"),
            "logger": f"{fields.pop('service')}.{fields.pop('logger')}",
            **fields,
        }
        return str(self._render(None, record.levelname.lower(), event))


def configure_logging(service: str, level: str = "INFO", log_format: LogFormat | str | None = None) -> None:
    """Send every logger's records to stdout in ``log_format`` (idempotent).

    ``None`` reads ``LOG_FORMAT`` from the environment (``json`` when unset), for a process whose
    settings do not carry the format yet.
    """
    chosen = LogFormat(log_format or os.environ.get("LOG_FORMAT", LogFormat.JSON))
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(service) if chosen is LogFormat.JSON else ConsoleFormatter(service, colors=sys.stdout.isatty())
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        # Access lines would duplicate our own request log, which carries the request id.
        logging.getLogger(noisy).handlers[:] = []
        logging.getLogger(noisy).propagate = False
