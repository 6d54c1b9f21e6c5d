"""Structured JSON logs with request, tenant and operation context; tokens never reach them."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message, context and extras."""

    _RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        fields = {**(_context.get() or {}), **{k: v for k, v in vars(record).items() if k not in self._RESERVED}}
        entry.update(redact_value(fields))
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every logger's records to stdout as JSON lines (idempotent)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        # Access lines would duplicate our own request log, which carries the request id.
        logging.getLogger(noisy).handlers[:] = []
        logging.getLogger(noisy).propagate = False
