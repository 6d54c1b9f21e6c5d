"""JSON log lines: context and extras kept, secrets never written, whichever field carries them."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from stockzen_platform.logging import ConsoleFormatter, JsonFormatter, LogFormat, configure_logging, log_context

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl"


def _line(message: str = "hello", *args: object, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    parsed: dict[str, object] = json.loads(JsonFormatter("svc").format(record))
    return parsed


def test_extra_fields_named_like_secrets_are_redacted_whatever_their_value() -> None:
    line = _line(
        password="hunter2-long-enough",
        app_db_password="pw",
        jwt_secret="s3cr3t",
        token="opaque-token",
        refresh_token="r",
        authorization="Basic dXNlcjpwYXNz",
        api_key="k",
        cookie="session=abc",
        tenant_id="t-1",
        operations=3,
    )
    for field in (
        "password",
        "app_db_password",
        "jwt_secret",
        "token",
        "refresh_token",
        "authorization",
        "api_key",
        "cookie",
    ):
        assert line[field] == "[REDACTED]", field
    assert (line["tenant_id"], line["operations"]) == ("t-1", 3)
    assert "hunter2" not in json.dumps(line)


def test_secrets_inside_extra_values_are_redacted_at_any_depth() -> None:
    line = _line(
        error=f"upstream said Bearer {JWT}",
        request={"headers": {"Authorization": f"Bearer {JWT}"}, "url": "amqp://user:pa55@host/"},
        attempts=[{"password": "x"}, f"token {JWT}"],
    )
    text = json.dumps(line)
    assert JWT not in text
    assert "pa55" not in text
    assert '"password": "x"' not in text
    assert line["error"] == "upstream said Bearer [REDACTED]"


def test_context_fields_and_the_message_are_redacted_too() -> None:
    with log_context(request_id="r-1", secret="in-context"):
        line = _line("calling with %s", f"Bearer {JWT}")
    assert line["request_id"] == "r-1"
    assert line["secret"] == "[REDACTED]"
    assert JWT not in json.dumps(line)


def test_an_exception_with_a_secret_is_redacted() -> None:
    try:
        raise RuntimeError(f"failed with Authorization: Bearer {JWT}")
    except RuntimeError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    assert JWT not in JsonFormatter("svc").format(record)


def _console(message: str = "hello", *args: object, **extra: object) -> str:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return ConsoleFormatter("svc").format(record)


def test_console_lines_are_readable_and_carry_context_and_extras() -> None:
    with log_context(request_id="req-7"):
        line = _console("sync answered %s", 200, operations=3)
    assert "\n" not in line
    assert not line.startswith("{")
    assert "sync answered 200" in line
    assert "[svc.t]" in line
    assert "operations=3" in line
    assert "request_id=req-7" in line


def test_console_lines_redact_secrets_like_json_lines() -> None:
    line = _console(f"Bearer {JWT} refused", authorization=f"Bearer {JWT}", jwt_secret="s3cr3t", url="amqp://u:pw@h/")
    assert JWT not in line
    assert "s3cr3t" not in line
    assert ":pw@" not in line
    assert "jwt_secret=[REDACTED]" in line


def test_the_format_comes_from_the_argument_or_else_log_format(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("svc", "INFO", LogFormat.CONSOLE)
        assert isinstance(root.handlers[0].formatter, ConsoleFormatter)
        monkeypatch.setenv("LOG_FORMAT", "console")
        configure_logging("svc", "INFO")
        assert isinstance(root.handlers[0].formatter, ConsoleFormatter)
        monkeypatch.delenv("LOG_FORMAT")
        configure_logging("svc", "INFO")
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        with pytest.raises(ValueError, match="yaml"):
            configure_logging("svc", "INFO", "yaml")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
